"""tf.data input pipelines: TFRecord dataset folders and plain image/mask folders, mixed with weights.

A *source* is a folder in one of two layouts (contract 3):

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

from roadseg.errors import MissingFile
from roadseg.tfrecords import parse_example, parse_metadata

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Mask value for pixels added by padding: neither background (0) nor road (255), so ignored.
PAD_MASK_VALUE = 127


@dataclass(frozen=True)
class Source:
    """One dataset folder and its sampling weight in the training mix."""

    path: str
    weight: float = 1.0

    @classmethod
    def parse(cls, spec: str | dict) -> Source:
        """``"PATH"``, ``"PATH:WEIGHT"`` or ``{"path": ..., "weight": ...}``."""
        if isinstance(spec, dict):
            return cls(str(spec["path"]), float(spec.get("weight", 1.0)))
        path, sep, weight = spec.rpartition(":")
        if sep and path and "/" not in weight:  # not the "://" of a URL
            return cls(path, float(weight))
        return cls(spec)

    def localized(self, cache: Path) -> Source:
        """The same source with a storage URL (``gs://``, ``file://``) copied into a local folder.

        TFRecord datasets in object storage are small next to what training reads from them (every
        epoch reads each shard again), so one copy through :mod:`roadseg.storage` (which honours the
        emulator and Workload Identity settings) beats streaming them through TF's own filesystems.
        """
        if "://" not in self.path:
            return self
        from roadseg.storage import storage_from_url

        storage = storage_from_url(self.path)
        local = cache / f"source-{abs(hash(self.path)):x}"
        for key in storage.list():
            if key.endswith((".tfrecord", ".json")) or "/images/" in f"/{key}" or "/masks/" in f"/{key}":
                storage.download(key, local / key)
        log.info("copied %s to %s", self.path, local)
        return Source(str(local), self.weight)


def _tfrecord_files(root: str, split: str) -> list[str]:
    return sorted(tf.io.gfile.glob(f"{root.rstrip('/')}/{split}-*-of-*.tfrecord"))


def _folder_pairs(root: str, split: str, warn: bool = True) -> list[tuple[str, str]]:
    """(image, mask) paths of a plain folder split; ``warn`` names images skipped for lack of a mask."""
    images = Path(root) / split / "images"
    masks = Path(root) / split / "masks"
    if not images.is_dir():
        return []
    pairs, unmasked = [], []
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
    mask = tf.pad(mask, paddings, constant_values=PAD_MASK_VALUE)
    return image, mask


def augment(image, mask, crop_size: int, scale_range: tuple[float, float] = (0.75, 1.25), color: bool = True):
    """Random scale, crop, flips, 90-degree rotation and colour jitter of one uint8 pair.

    Masks are resized with nearest neighbour so they keep exactly their 0/255/ignore values.
    Returns image float32 [crop,crop,3] in [0, 255] and mask uint8 [crop,crop,1].
    """
    image = tf.cast(image, tf.float32)
    scale = tf.random.uniform([], scale_range[0], scale_range[1])
    size = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * scale), tf.int32)
    image = tf.image.resize(image, size, method="bilinear")
    mask = tf.image.resize(mask, size, method="nearest")
    image, mask = _pad_to(image, mask, crop_size)
    stacked = tf.concat([image, tf.cast(mask, tf.float32)], axis=-1)
    stacked = tf.image.random_crop(stacked, [crop_size, crop_size, 4])
    stacked = tf.image.random_flip_left_right(stacked)
    stacked = tf.image.random_flip_up_down(stacked)
    stacked = tf.image.rot90(stacked, k=tf.random.uniform([], 0, 4, dtype=tf.int32))
    image, mask = stacked[..., :3], tf.cast(tf.round(stacked[..., 3:]), tf.uint8)
    if color:
        image = image / 255.0
        image = tf.image.random_brightness(image, 0.1)
        image = tf.image.random_contrast(image, 0.8, 1.2)
        image = tf.image.random_saturation(image, 0.8, 1.2)
        image = tf.image.random_hue(image, 0.03)
        image = tf.clip_by_value(image, 0.0, 1.0) * 255.0
    return image, mask


def center_crop(image, mask, size: int):
    """Deterministic crop (after padding when smaller) for validation batches of one shape."""
    image, mask = _pad_to(tf.cast(image, tf.float32), mask, size)
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return image[top : top + size, left : left + size], mask[top : top + size, left : left + size]


def training_dataset(
    sources: list[Source], crop_size: int, batch_size: int, split: str = "train", seed: int | None = None
) -> tf.data.Dataset:
    """Endless, shuffled, augmented, weight-mixed batches (decoded sources are cached in memory)."""
    streams = [load_source(s, split).cache().shuffle(512, seed=seed).repeat() for s in sources]
    weights = [s.weight for s in sources]
    mixed = streams[0] if len(streams) == 1 else tf.data.Dataset.sample_from_datasets(streams, weights, seed=seed)
    mixed = mixed.map(lambda i, m: augment(i, m, crop_size), num_parallel_calls=AUTOTUNE)
    return mixed.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def validation_dataset(sources: list[Source], crop_size: int, batch_size: int, split: str = "val") -> tf.data.Dataset:
    """Every example of ``split`` from each source once, centre-cropped to ``crop_size``, cached."""
    data = None
    for source in sources:
        ds = load_source(source, split)
        data = ds if data is None else data.concatenate(ds)
    data = data.map(lambda i, m: center_crop(i, m, crop_size), num_parallel_calls=AUTOTUNE)
    return data.batch(batch_size).cache().prefetch(AUTOTUNE)


def steps_for(sources: list[Source], batch_size: int, split: str = "train") -> int:
    """Batches in one pass over every training example (the default epoch length)."""
    total = sum(count_examples(s, split) for s in sources)
    return max(1, math.ceil(total / batch_size))
