"""tf.data input pipelines: TFRecord dataset folders and plain image/mask folders, mixed with weights.

A *source* is a folder in one of two layouts (docs/contracts.md §3):

- TFRecord: ``{split}-{i:05d}-of-{n:05d}.tfrecord`` shards (local or ``gs://``), decoded with
  :func:`roadseg.tfrecords.parse_example`;
- plain: ``{split}/images/<stem>.{jpg,png}`` and ``{split}/masks/<stem>.png`` (same stem).

Images come out as float32 RGB in [0, 255] (the model preprocesses itself) and masks as uint8
[H,W,1] keeping the ignore values, so losses and metrics can skip those pixels.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from roadseg.errors import InvalidInput, MissingFile
from roadseg.mask_values import BACKGROUND, IGNORE, ROAD
from roadseg.storage import split_suffix, storage_from_url
from roadseg.tfrecords import SOURCE_FILE, parse_band, parse_example, parse_metadata

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
#: Mask folders of a plain source: the masks of its targets, and the surface of a "both" source.
_MASK_DIRS = ("masks", "surface_masks")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


#: What a source's masks hold (``Source.targets``): "band" (``masks/`` is the centreline band),
#: "surface" (``masks/`` is the road surface; the band is derived from it) or "both" (plain folders:
#: ``masks/`` the band and ``surface_masks/`` the surface; TFRecords of label runs: ``mask/png`` the
#: surface and ``band/png`` the band).
SOURCE_TARGETS = ("band", "surface", "both")


@dataclass(frozen=True)
class Source:
    """One dataset folder, its sampling weight in the training mix, ground pixel size and targets.

    ``pixel_size_m`` (metres per pixel) lets the trainer rescale each source to the same range of
    ground resolutions (see :class:`Augmentation`); unknown (None), the source gets scale jitter only.
    ``targets`` (one of :data:`SOURCE_TARGETS`) says which road definition its masks follow; a
    two-output model learns each output only from the sources that provide it. Both default to the
    dataset's ``source.json`` when it has one.
    """

    path: str
    weight: float = 1.0
    pixel_size_m: float | None = None
    targets: str | None = None

    @classmethod
    def parse(cls, spec: str | dict) -> Source:
        """``"PATH"``, ``"PATH:WEIGHT"`` or ``{"path", "weight", "pixel_size_m", "targets"}``."""
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - {"path", "weight", "pixel_size_m", "targets"})
            if unknown or "path" not in spec:
                raise InvalidInput(f"a data source needs path (and optional weight, pixel_size_m, targets), got {spec}")
            targets = spec.get("targets")
            if targets is not None and targets not in SOURCE_TARGETS:
                raise InvalidInput(f"targets must be one of {', '.join(SOURCE_TARGETS)}, got {targets!r}")
            pixel = spec.get("pixel_size_m")
            return cls(str(spec["path"]), float(spec.get("weight", 1.0)), float(pixel) if pixel else None, targets)
        path, weight = split_suffix(spec)
        return cls(path) if weight is None else cls(path, float(weight))

    def declared(self) -> Source:
        """This source with unset ``pixel_size_m`` and ``targets`` taken from its ``source.json``."""
        file = Path(self.path) / SOURCE_FILE
        if "://" in self.path or not file.is_file():
            return self
        try:
            declared = json.loads(file.read_text())
        except ValueError as exc:
            raise InvalidInput(f"{file} is not valid JSON: {exc}") from exc
        targets = self.targets or declared.get("targets")
        if targets is not None and targets not in SOURCE_TARGETS:
            raise InvalidInput(f"{file}: targets must be one of {', '.join(SOURCE_TARGETS)}, got {targets!r}")
        pixel = self.pixel_size_m or declared.get("pixel_size_m")
        return Source(self.path, self.weight, float(pixel) if pixel else None, targets)

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
            if key.endswith((".tfrecord", ".json")) or any(f"/{d}/" in f"/{key}" for d in _MASK_DIRS + ("images",)):
                storage.download(key, local / key)
        log.info("copied %s to %s", self.path, local)
        return Source(str(local), self.weight, self.pixel_size_m, self.targets)


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


def _decode_pair(image_path: str, mask_path: str) -> tuple[tf.Tensor, tf.Tensor]:
    image = tf.io.decode_image(tf.io.read_file(image_path), channels=3, expand_animations=False)
    mask = tf.io.decode_image(tf.io.read_file(mask_path), channels=1, expand_animations=False)
    return image, mask


def count_examples(source: Source, split: str) -> int:
    """Number of examples of ``split`` in a source (reads TFRecord shards once to count)."""
    files = _tfrecord_files(source.path, split)
    if files:
        return sum(1 for _ in tf.data.TFRecordDataset(files))
    return len(_folder_pairs(source.path, split, warn=False))  # load_source warns


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


def second_masks(source: Source, split: str) -> Iterator[np.ndarray]:
    """The other mask of a "both" source, in :func:`iter_examples`' order.

    TFRecords (label runs' datasets) hold the surface in ``mask/png`` and the band in ``band/png``: this
    yields the band. Plain folders hold the band in ``masks/`` and the surface in ``surface_masks/``
    (the missing-road finder's datasets): this yields the surface.
    """
    files = _tfrecord_files(source.path, split)
    if files:
        for record in tf.data.TFRecordDataset(files):
            band = parse_band(record)
            if band is None:
                raise MissingFile(f"{source.path} declares targets 'both' but an example has no band/png")
            yield band
        return
    pairs = _folder_pairs(source.path, split, warn=False)
    for image_path, _ in pairs:
        path = Path(source.path) / split / "surface_masks" / f"{Path(image_path).stem}.png"
        if not path.is_file():
            raise MissingFile(f"{source.path} declares targets 'both' but has no surface mask {path}")
        yield tf.io.decode_png(tf.io.read_file(str(path)), channels=1).numpy()[..., 0]


def band_from_surface(surface: np.ndarray, band_px: float) -> np.ndarray:
    """The centreline band of a road-surface mask: its skeleton widened to ``band_px`` pixels.

    Gives surface-labelled sources (CIL-2022, DeepGlobe) the Massachusetts definition of a road too,
    so the band output learns from every source. Pixels the surface mask ignores stay ignored unless
    the band covers them.
    """
    from scipy import ndimage
    from skimage.morphology import skeletonize

    road = surface == ROAD
    skeleton = skeletonize(road)
    if not skeleton.any():
        band = np.zeros(surface.shape, bool)
    else:
        band = ndimage.distance_transform_edt(~skeleton) <= band_px / 2
    out = np.where(band, ROAD, BACKGROUND).astype(np.uint8)
    out[~band & (surface != ROAD) & (surface != BACKGROUND)] = IGNORE
    return out


def target_masks(source: Source, mask: np.ndarray, surface: np.ndarray | None, band_width_m: float) -> np.ndarray:
    """uint8 [H, W, 2] masks of :data:`roadseg.trainer.TARGETS` (surface, band) for one example.

    A target the source does not provide is all :data:`IGNORE`, so the loss and the metrics skip it.
    """
    targets = source.targets or "band"
    if targets == "band":
        return np.stack([np.full_like(mask, IGNORE), mask], axis=-1)
    if targets == "surface":
        if not source.pixel_size_m:
            raise InvalidInput(f"{source.path}: a surface-labelled source needs pixel_size_m to derive its band")
        return np.stack([mask, band_from_surface(mask, band_width_m / source.pixel_size_m)], axis=-1)
    if surface is None:
        raise InvalidInput(f"{source.path}: targets 'both' needs surface masks")
    return np.stack([surface, mask], axis=-1)


def load_examples(source: Source, split: str, outputs: int = 1, band_width_m: float = 7.0) -> list:
    """Every (image uint8 [H,W,3], mask uint8 [H,W,outputs]) of a split, decoded into memory.

    One output: the source's masks as they are. Two outputs: :func:`target_masks`. Decoding once up
    front (the sources are small next to memory) lets the training pipeline address any example by
    index, which is what makes its order a pure function of the step (:func:`training_dataset`).
    """
    source = source.declared()
    others = second_masks(source, split) if outputs == 2 and source.targets == "both" else None
    tfrecords = bool(_tfrecord_files(source.path, split))
    examples = []
    for _, image, mask in iter_examples(source, split):
        if outputs == 1:
            examples.append((image, mask[..., None]))
        elif others is None:
            examples.append((image, target_masks(source, mask, None, band_width_m)))
        else:  # "both": target_masks takes (band, surface)
            other = next(others)
            band, surface = (other, mask) if tfrecords else (mask, other)
            examples.append((image, target_masks(source, band, surface, band_width_m)))
    return examples


def _pad_to(image: tf.Tensor, mask: tf.Tensor, size: int | tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
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


def _log_uniform(low: float, high: float, seed: tf.Tensor) -> tf.Tensor:
    return tf.exp(tf.random.stateless_uniform([], seed, math.log(low), math.log(high)))


def _uniform(seed: tf.Tensor, low: float = 0.0, high: float = 1.0) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed, low, high)


def _seeds(seed: tf.Tensor, count: int) -> list[tf.Tensor]:
    """``count`` independent stateless seeds from one (every random choice of a crop has its own)."""
    return list(tf.unstack(tf.random.experimental.stateless_split(seed, count)))


def _scale_for(aug: Augmentation, pixel_size_m: tf.Tensor | float, seed: tf.Tensor) -> tf.Tensor:
    """The resize factor (output px per input px) of one crop; ``pixel_size_m`` 0 means unknown."""
    jitter_seed, target_seed, coin_seed = _seeds(seed, 3)
    jitter = _log_uniform(*aug.scale_range, jitter_seed)
    if aug.pixel_size_range_m is None or aug.rescale_probability <= 0:
        return jitter
    pixel_size_m = tf.cast(pixel_size_m, tf.float32)
    target = _log_uniform(*aug.pixel_size_range_m, target_seed)
    rescale = tf.logical_and(_uniform(coin_seed) < aug.rescale_probability, pixel_size_m > 0)
    return tf.where(rescale, pixel_size_m / target, jitter)


def _scaled_crop(
    image: tf.Tensor, mask: tf.Tensor, crop_size: int, scale: tf.Tensor, seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
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
    stacked = tf.image.stateless_random_crop(stacked, tf.stack([region, region, tf.shape(stacked)[-1]]), seed)
    image = tf.image.resize(stacked[..., :3], [crop_size, crop_size], method="bilinear", antialias=True)
    mask = tf.image.resize(stacked[..., 3:], [crop_size, crop_size], method="nearest")
    return tf.clip_by_value(image, 0.0, 255.0), mask


def _maybe(
    probability: float, fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], image: tf.Tensor, seed: tf.Tensor
) -> tf.Tensor:
    coin_seed, fn_seed = _seeds(seed, 2)
    return tf.cond(_uniform(coin_seed) < probability, lambda: fn(image, fn_seed), lambda: image)


def _gaussian_blur(image: tf.Tensor, seed: tf.Tensor, max_sigma: float = 1.5, size: int = 7) -> tf.Tensor:
    """Blur with a random sigma (defocus, haze, coarser optics); reflect-padded so edges stay bright."""
    sigma = _uniform(seed, 0.4, max_sigma)
    x = tf.range(size, dtype=tf.float32) - (size - 1) / 2
    kernel = tf.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / tf.reduce_sum(kernel)
    half = size // 2
    padded = tf.pad(image[None], [[0, 0], [half, half], [half, half], [0, 0]], mode="REFLECT")
    rows = tf.tile(tf.reshape(kernel, [size, 1, 1, 1]), [1, 1, 3, 1])
    cols = tf.tile(tf.reshape(kernel, [1, size, 1, 1]), [1, 1, 3, 1])
    out = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(out, cols, [1, 1, 1, 1], "VALID")[0]


def _noise(image: tf.Tensor, seed: tf.Tensor, max_sigma: float = 0.04) -> tf.Tensor:
    sigma_seed, noise_seed = _seeds(seed, 2)
    return image + tf.random.stateless_normal(tf.shape(image), noise_seed) * _uniform(sigma_seed, 0.0, max_sigma)


def _jpeg(image: tf.Tensor, seed: tf.Tensor, low: int = 25, high: int = 95) -> tf.Tensor:
    return tf.image.stateless_random_jpeg_quality(tf.clip_by_value(image, 0.0, 1.0), low, high + 1, seed)


def _grey(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


def photometric(image: tf.Tensor, kind: str = "basic", seed: tf.Tensor | tuple[int, int] = (0, 0)) -> tf.Tensor:
    """Appearance augmentation of a float [0, 255] RGB crop; ``kind`` is one of roadseg.trainer.PHOTOMETRIC.

    ``seed`` (two integers) fixes every random choice: the same seed gives the same crop.
    """
    if kind == "none":
        return image
    strong = kind == "strong"
    seeds = _seeds(tf.cast(seed, tf.int64), 9)
    image = image / 255.0
    image = tf.image.stateless_random_brightness(image, 0.15 if strong else 0.1, seeds[0])
    image = tf.image.stateless_random_contrast(image, 0.7 if strong else 0.8, 1.3 if strong else 1.2, seeds[1])
    image = tf.image.stateless_random_saturation(image, 0.6 if strong else 0.8, 1.4 if strong else 1.2, seeds[2])
    image = tf.image.stateless_random_hue(image, 0.05 if strong else 0.03, seeds[3])
    image = tf.clip_by_value(image, 0.0, 1.0)
    if strong:
        image = image ** _log_uniform(0.7, 1.4, seeds[4])
        image = _maybe(0.05, _grey, image, seeds[5])
        image = _maybe(0.25, _gaussian_blur, image, seeds[6])
        image = _maybe(0.25, _noise, image, seeds[7])
        image = _maybe(0.25, _jpeg, tf.clip_by_value(image, 0.0, 1.0), seeds[8])
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0


def augment(
    image: tf.Tensor,
    mask: tf.Tensor,
    aug: Augmentation,
    pixel_size_m: tf.Tensor | float | None = None,
    seed: tf.Tensor | tuple[int, int] = (0, 0),
) -> tuple[tf.Tensor, tf.Tensor]:
    """Random scale and crop, flips, 90-degree turns and appearance changes of one uint8 pair.

    Returns image float32 [crop,crop,3] in [0, 255] and mask uint8 [crop,crop,C] (C as given).
    Every random choice comes from ``seed`` (stateless ops): the same seed, the same crop, in any
    process, which lets a resumed run see exactly the crops it would have seen.
    """
    seeds = _seeds(tf.cast(seed, tf.int64), 6)
    scale = _scale_for(aug, 0.0 if pixel_size_m is None else pixel_size_m, seeds[0])
    image, mask = _scaled_crop(image, mask, aug.crop_size, scale, seeds[1])
    channels = mask.shape[-1] or 1
    stacked = tf.concat([image, mask], axis=-1)
    stacked = tf.image.stateless_random_flip_left_right(stacked, seeds[2])
    stacked = tf.image.stateless_random_flip_up_down(stacked, seeds[3])
    turns = tf.random.stateless_uniform([], seeds[4], 0, 4, dtype=tf.int32)
    stacked = tf.image.rot90(stacked, k=turns)
    image, mask = stacked[..., :3], tf.cast(tf.round(stacked[..., 3:]), tf.uint8)
    image = photometric(image, aug.photometric, seeds[5])
    image.set_shape([aug.crop_size, aug.crop_size, 3])
    mask.set_shape([aug.crop_size, aug.crop_size, channels])
    return image, mask


def center_crop(image: tf.Tensor, mask: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Deterministic crop (after padding when smaller) for validation batches of one shape."""
    image, mask = _pad_to(tf.cast(image, tf.float32), mask, size)
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return image[top : top + size, left : left + size], mask[top : top + size, left : left + size]


def training_dataset(
    sources: list[Source],
    aug: Augmentation,
    batch_size: int,
    split: str = "train",
    seed: int = 0,
    start_step: int = 0,
    outputs: int = 1,
    band_width_m: float = 7.0,
    pools: list[list] | None = None,
) -> tf.data.Dataset:
    """Endless, augmented, weight-mixed batches; batch k is a pure function of (``seed``, k).

    Crop number i picks its source (by weight), its example and every augmentation from the seed
    (``seed``, i), so the run resumed at step k (``start_step``) sees exactly the batches an
    uninterrupted run would have, without replaying k batches. Sources are sampled with
    replacement; each is augmented with its own pixel size, so a full 1024 px tile and a 400 px crop
    both yield crops of the same ground-resolution range. ``pools`` are the sources' examples when
    already loaded (:func:`load_pools`).
    """
    pools = pools if pools is not None else load_pools(sources, split, outputs, band_width_m)
    weights = np.asarray([s.weight for s in sources], np.float64)
    if not (weights > 0).all():
        raise InvalidInput(f"source weights must be positive, got {weights.tolist()}")
    chances = weights / weights.sum()
    pixel_sizes = [np.float32(s.declared().pixel_size_m or 0.0) for s in sources]

    def pick(index: np.int64) -> tuple[np.ndarray, np.ndarray, np.float32]:
        rng = np.random.default_rng([seed, int(index)])
        k = int(rng.choice(len(pools), p=chances))
        image, mask = pools[k][int(rng.integers(len(pools[k])))]
        return image, mask, pixel_sizes[k]

    def load(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, mask, pixel = tf.numpy_function(pick, [index], [tf.uint8, tf.uint8, tf.float32], stateful=False)
        image.set_shape([None, None, 3])
        mask.set_shape([None, None, outputs])
        seed_pair = tf.stack([tf.constant(seed, tf.int64), index])
        return augment(image, mask, aug, pixel, seed_pair)

    indices = tf.data.Dataset.range(start_step * batch_size, np.iinfo(np.int64).max)
    crops = indices.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    return crops.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def load_pools(sources: list[Source], split: str, outputs: int = 1, band_width_m: float = 7.0) -> list[list]:
    """Every source's examples (:func:`load_examples`); a source without any is an error naming what is wrong."""
    pools = [load_examples(source, split, outputs, band_width_m) for source in sources]
    for source, pool in zip(sources, pools, strict=True):
        if not pool:
            raise MissingFile(f"no {split!r} data in {source.path}: {_why_no_pairs(source.path, split)}")
    return pools


def validation_dataset(
    sources: list[Source],
    crop_size: int,
    batch_size: int,
    split: str = "val",
    outputs: int = 1,
    band_width_m: float = 7.0,
) -> tf.data.Dataset:
    """Every example of ``split`` from each source once, centre-cropped to ``crop_size``, cached."""
    images, masks = [], []
    for source in sources:
        for image, mask in load_examples(source, split, outputs, band_width_m):
            crop, crop_mask = center_crop(tf.constant(image), tf.constant(mask), crop_size)
            images.append(crop.numpy())
            masks.append(crop_mask.numpy())
    if not images:
        raise MissingFile(f"no {split!r} data in {[s.path for s in sources]}")
    data = tf.data.Dataset.from_tensor_slices((np.stack(images), np.stack(masks)))
    return data.batch(batch_size).cache().prefetch(AUTOTUNE)


def steps_for(sources: list[Source], batch_size: int, split: str = "train") -> int:
    """Batches in one pass over every training example (the default epoch length)."""
    total = sum(count_examples(s, split) for s in sources)
    return max(1, math.ceil(total / batch_size))
