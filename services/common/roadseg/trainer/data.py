"""tf.data input pipelines: TFRecord dataset folders and plain image/mask folders, mixed with weights.

A *source* is a folder in one of two layouts (docs/contracts.md §3):

- TFRecord: ``{split}-{i:05d}-of-{n:05d}.tfrecord`` shards (local or ``gs://``), decoded with
  :func:`roadseg.tfrecords.parse_example`;
- plain: ``{split}/images/<stem>.{jpg,png}`` and ``{split}/masks/<stem>.png`` (same stem).

Images come out as float32 RGB in [0, 255] (the model preprocesses itself) and masks as uint8
[H,W,1] keeping the ignore values, so losses and metrics can skip those pixels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from roadseg.errors import InvalidInput, MissingFile
from roadseg.mask_values import IGNORE
from roadseg.storage import split_suffix, storage_from_url
from roadseg.tfrecords import parse_example, parse_metadata

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Source:
    """One dataset folder, its sampling weight in the training mix and its ground pixel size.

    ``pixel_size_m`` (metres per pixel) lets the trainer rescale each source to the same range of
    ground resolutions (see :class:`Augmentation`); unknown (None), the source gets scale jitter only.
    """

    path: str
    weight: float = 1.0
    pixel_size_m: float | None = None

    @classmethod
    def parse(cls, spec: str | dict) -> Source:
        """``"PATH"``, ``"PATH:WEIGHT"`` or ``{"path": ..., "weight": ..., "pixel_size_m": ...}``."""
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - {"path", "weight", "pixel_size_m"})
            if unknown or "path" not in spec:
                raise InvalidInput(f"a data source needs path (and optional weight, pixel_size_m), got {spec}")
            pixel = spec.get("pixel_size_m")
            return cls(str(spec["path"]), float(spec.get("weight", 1.0)), float(pixel) if pixel else None)
        path, weight = split_suffix(spec)
        return cls(path) if weight is None else cls(path, float(weight))

    def localized(self, cache: Path) -> Source:
        """The same source with a storage URL (``gs://``, ``file://``) copied into a local folder.

        TFRecord datasets in object storage are small next to what training reads from them (every
        epoch reads each shard again), so one copy through :mod:`roadseg.storage` (which honours the
        emulator and Workload Identity settings) beats streaming them through TF's own filesystems.
        """
        if "://" not in self.path:
            return self
        storage = storage_from_url(self.path)
        local = cache / f"source-{abs(hash(self.path)):x}"
        for key in storage.list():
            if key.endswith((".tfrecord", ".json")) or "/images/" in f"/{key}" or "/masks/" in f"/{key}":
                storage.download(key, local / key)
        log.info("copied %s to %s", self.path, local)
        return Source(str(local), self.weight, self.pixel_size_m)


def _tfrecord_files(root: str, split: str) -> list[str]:
    return sorted(tf.io.gfile.glob(f"{root.rstrip('/')}/{split}-*-of-*.tfrecord"))


def _folder_pairs(root: str, split: str, warn: bool = True) -> list[tuple[str, str]]:
    """(image, mask) paths of a plain folder split; ``warn`` names images skipped for lack of a mask."""
    images = Path(root) / split / "images"
    masks = Path(root) / split / "masks"
    if not images.is_dir():
        return []
    pairs: list[tuple[str, str]] = []
    unmasked: list[tuple[str, str]] = []
    for image in sorted(images.iterdir()):
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        mask = masks / f"{image.stem}.png"
        (pairs if mask.is_file() else unmasked).append((str(image), str(mask)))
    if warn and pairs and unmasked:
        log.warning("%s: skipping %d images without a mask, e.g. %s", images, len(unmasked), unmasked[0][1])
    return pairs


def _why_no_pairs(root: str, split: str) -> str:
    """What is wrong with a folder that gave no (image, mask) pairs, in words a user can act on."""
    expected = f"expected {split}-*.tfrecord shards or {split}/images/<name>.jpg|png + {split}/masks/<name>.png"
    images = Path(root) / split / "images"
    if not Path(root).is_dir():
        return f"the folder does not exist ({expected})"
    if not images.is_dir():
        return expected
    names = [p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not names:
        return f"{images} holds no images with suffix {', '.join(sorted(IMAGE_SUFFIXES))}"
    return f"none of the {len(names)} images has a mask, e.g. {Path(root) / split / 'masks' / (names[0].stem + '.png')}"


def _decode_pair(image_path, mask_path):
    image = tf.io.decode_image(tf.io.read_file(image_path), channels=3, expand_animations=False)
    mask = tf.io.decode_image(tf.io.read_file(mask_path), channels=1, expand_animations=False)
    return image, mask


def count_examples(source: Source, split: str) -> int:
    """Number of examples of ``split`` in a source (reads TFRecord shards once to count)."""
    files = _tfrecord_files(source.path, split)
    if files:
        return sum(1 for _ in tf.data.TFRecordDataset(files))
    return len(_folder_pairs(source.path, split, warn=False))  # load_source warns


def load_source(source: Source, split: str) -> tf.data.Dataset:
    """Decoded (image uint8 [H,W,3], mask uint8 [H,W,1]) pairs of one split of one source."""
    files = _tfrecord_files(source.path, split)
    if files:
        records = tf.data.TFRecordDataset(files, num_parallel_reads=AUTOTUNE)
        return records.map(parse_example, num_parallel_calls=AUTOTUNE)
    pairs = _folder_pairs(source.path, split)
    if not pairs:
        raise MissingFile(f"no {split!r} data in {source.path}: {_why_no_pairs(source.path, split)}")
    images, masks = zip(*pairs, strict=True)
    paths = tf.data.Dataset.from_tensor_slices((list(images), list(masks)))
    return paths.map(_decode_pair, num_parallel_calls=AUTOTUNE)


def iter_examples(source: Source, split: str) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image uint8 [H,W,3], mask uint8 [H,W]) of every example, in a stable order, for evaluation."""
    files = _tfrecord_files(source.path, split)
    if files:
        for record in tf.data.TFRecordDataset(files):
            image, mask = parse_example(record)
            yield parse_metadata(record)["tile_id"], image.numpy(), mask.numpy()[..., 0]
        return
    pairs = _folder_pairs(source.path, split)
    if not pairs:
        raise MissingFile(f"no {split!r} data in {source.path}: {_why_no_pairs(source.path, split)}")
    for image_path, mask_path in pairs:
        image, mask = _decode_pair(image_path, mask_path)
        yield Path(image_path).stem, image.numpy(), mask.numpy()[..., 0]


def _pad_to(image, mask, size: int):
    """Pad up to ``size`` on each side: image with zeros, mask with the ignore value."""
    shape = tf.shape(image)
    pad_h = tf.maximum(size - shape[0], 0)
    pad_w = tf.maximum(size - shape[1], 0)
    paddings = [[0, pad_h], [0, pad_w], [0, 0]]
    image = tf.pad(image, paddings)
    mask = tf.pad(mask, paddings, constant_values=IGNORE)
    return image, mask


@dataclass(frozen=True)
class Augmentation:
    """How training crops are made: geometry (scale, crop, flips, turns) and appearance.

    Scale: with probability ``rescale_probability``, and for sources whose pixel size is known, the
    crop is resampled to a ground pixel size drawn log-uniformly from ``pixel_size_range_m``, so
    every source covers the resolutions users send (0.3-1.5 m). Otherwise the scale is jittered
    within ``scale_range`` around the source's own resolution. A crop never reaches beyond the
    image's shorter side (small sources cannot stand for very coarse pixels without empty padding).

    Appearance ("photometric"): "basic" jitters brightness, contrast, saturation and hue; "strong"
    adds gamma, grey, blur, sensor noise and JPEG re-compression, the differences between sensors,
    seasons and the PNG/JPEG files users upload.
    """

    crop_size: int
    scale_range: tuple[float, float] = (0.75, 1.25)
    pixel_size_range_m: tuple[float, float] | None = None
    rescale_probability: float = 0.5
    photometric: str = "basic"


def _log_uniform(low: float, high: float):
    return tf.exp(tf.random.uniform([], math.log(low), math.log(high)))


def _scale_for(aug: Augmentation, pixel_size_m: float | None):
    """The resize factor (output px per input px) of one crop."""
    jitter = _log_uniform(*aug.scale_range)
    if aug.pixel_size_range_m is None or not pixel_size_m or aug.rescale_probability <= 0:
        return jitter
    target = _log_uniform(*aug.pixel_size_range_m)
    rescale = tf.random.uniform([]) < aug.rescale_probability
    return tf.where(rescale, pixel_size_m / target, jitter)


def _scaled_crop(image, mask, crop_size: int, scale):
    """A random square of ``crop_size / scale`` input pixels, resized to ``crop_size``.

    Cropping before resizing keeps the cost per crop independent of the image size (full tiles).
    Masks are resized with nearest neighbour so they keep exactly their 0/255/ignore values.
    """
    shape = tf.shape(image)
    shorter = tf.minimum(shape[0], shape[1])
    region = tf.cast(tf.round(crop_size / scale), tf.int32)
    region = tf.clip_by_value(region, 8, tf.maximum(shorter, crop_size))
    image, mask = _pad_to(tf.cast(image, tf.float32), mask, region)
    stacked = tf.concat([image, tf.cast(mask, tf.float32)], axis=-1)
    stacked = tf.image.random_crop(stacked, tf.stack([region, region, 4]))
    image = tf.image.resize(stacked[..., :3], [crop_size, crop_size], method="bilinear", antialias=True)
    mask = tf.image.resize(stacked[..., 3:], [crop_size, crop_size], method="nearest")
    return tf.clip_by_value(image, 0.0, 255.0), mask


def _maybe(probability: float, fn, image):
    return tf.cond(tf.random.uniform([]) < probability, lambda: fn(image), lambda: image)


def _gaussian_blur(image, max_sigma: float = 1.5, size: int = 7):
    """Blur with a random sigma (defocus, haze, coarser optics); reflect-padded so edges stay bright."""
    sigma = tf.random.uniform([], 0.4, max_sigma)
    x = tf.range(size, dtype=tf.float32) - (size - 1) / 2
    kernel = tf.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / tf.reduce_sum(kernel)
    half = size // 2
    padded = tf.pad(image[None], [[0, 0], [half, half], [half, half], [0, 0]], mode="REFLECT")
    rows = tf.tile(tf.reshape(kernel, [size, 1, 1, 1]), [1, 1, 3, 1])
    cols = tf.tile(tf.reshape(kernel, [1, size, 1, 1]), [1, 1, 3, 1])
    out = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(out, cols, [1, 1, 1, 1], "VALID")[0]


def _noise(image, max_sigma: float = 0.04):
    return image + tf.random.normal(tf.shape(image), stddev=tf.random.uniform([], 0.0, max_sigma))


def _jpeg(image, low: int = 25, high: int = 95):
    quality = tf.random.uniform([], low, high + 1, dtype=tf.int32)
    return tf.image.adjust_jpeg_quality(tf.clip_by_value(image, 0.0, 1.0), quality)


def _grey(image):
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


def photometric(image, kind: str = "basic"):
    """Appearance augmentation of a float [0, 255] RGB crop; ``kind`` is one of roadseg.trainer.PHOTOMETRIC."""
    if kind == "none":
        return image
    strong = kind == "strong"
    image = image / 255.0
    image = tf.image.random_brightness(image, 0.15 if strong else 0.1)
    image = tf.image.random_contrast(image, 0.7 if strong else 0.8, 1.3 if strong else 1.2)
    image = tf.image.random_saturation(image, 0.6 if strong else 0.8, 1.4 if strong else 1.2)
    image = tf.image.random_hue(image, 0.05 if strong else 0.03)
    image = tf.clip_by_value(image, 0.0, 1.0)
    if strong:
        image = image ** _log_uniform(0.7, 1.4)
        image = _maybe(0.05, _grey, image)
        image = _maybe(0.25, _gaussian_blur, image)
        image = _maybe(0.25, _noise, image)
        image = _maybe(0.25, _jpeg, tf.clip_by_value(image, 0.0, 1.0))
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0


def augment(image, mask, aug: Augmentation, pixel_size_m: float | None = None):
    """Random scale and crop, flips, 90-degree turns and appearance changes of one uint8 pair.

    Returns image float32 [crop,crop,3] in [0, 255] and mask uint8 [crop,crop,1].
    """
    image, mask = _scaled_crop(image, mask, aug.crop_size, _scale_for(aug, pixel_size_m))
    stacked = tf.concat([image, mask], axis=-1)
    stacked = tf.image.random_flip_left_right(stacked)
    stacked = tf.image.random_flip_up_down(stacked)
    stacked = tf.image.rot90(stacked, k=tf.random.uniform([], 0, 4, dtype=tf.int32))
    image, mask = stacked[..., :3], tf.cast(tf.round(stacked[..., 3:]), tf.uint8)
    image = photometric(image, aug.photometric)
    image.set_shape([aug.crop_size, aug.crop_size, 3])
    mask.set_shape([aug.crop_size, aug.crop_size, 1])
    return image, mask


def center_crop(image, mask, size: int):
    """Deterministic crop (after padding when smaller) for validation batches of one shape."""
    image, mask = _pad_to(tf.cast(image, tf.float32), mask, size)
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return image[top : top + size, left : left + size], mask[top : top + size, left : left + size]


def training_dataset(
    sources: list[Source], aug: Augmentation, batch_size: int, split: str = "train", seed: int | None = None
) -> tf.data.Dataset:
    """Endless, shuffled, augmented, weight-mixed batches (decoded sources are cached in memory).

    Each source is augmented with its own pixel size before mixing, so a full 1024 px tile and a
    400 px crop both yield crops of the same ground-resolution range.
    """
    streams = []
    for source in sources:
        stream = load_source(source, split).cache().shuffle(512, seed=seed).repeat()
        streams.append(
            stream.map(lambda i, m, px=source.pixel_size_m: augment(i, m, aug, px), num_parallel_calls=AUTOTUNE)
        )
    weights = [s.weight for s in sources]
    mixed = streams[0] if len(streams) == 1 else tf.data.Dataset.sample_from_datasets(streams, weights, seed=seed)
    return mixed.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def validation_dataset(sources: list[Source], crop_size: int, batch_size: int, split: str = "val") -> tf.data.Dataset:
    """Every example of ``split`` from each source once, centre-cropped to ``crop_size``, cached."""
    data = load_source(sources[0], split)
    for source in sources[1:]:
        data = data.concatenate(load_source(source, split))
    data = data.map(lambda i, m: center_crop(i, m, crop_size), num_parallel_calls=AUTOTUNE)
    return data.batch(batch_size).cache().prefetch(AUTOTUNE)


def steps_for(sources: list[Source], batch_size: int, split: str = "train") -> int:
    """Batches in one pass over every training example (the default epoch length)."""
    total = sum(count_examples(s, split) for s in sources)
    return max(1, math.ceil(total / batch_size))
