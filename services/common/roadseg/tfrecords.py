"""The training dataset format (docs/contracts.md §3): TFRecord examples holding PNG image + PNG mask.

One format for every source (labeled scenes, Massachusetts crops, CIL-2022), so the trainer
has a single input pipeline. PNG keeps masks lossless (0 background, 255 road, anything else
ignored) and keeps images exact; TFRecord shards stream well from local disk or GCS.

Keys: ``image/png`` (bytes), ``mask/png`` (bytes), ``tile_id`` (bytes), ``bounds`` (4 floats,
tile bounds in its CRS or pixel bounds when not georeferenced), ``crs`` (bytes, may be empty), and
``band/png`` (bytes, the centreline band mask) in datasets of label runs, whose ``mask/png`` is the
road surface.

A dataset folder holds ``{split}-{i:05d}-of-{n:05d}.tfrecord`` for split in train/val/test and a
``manifest.json``; :func:`shard_name` and :data:`SPLITS` spell those names once. ``source.json``
(:data:`SOURCE_FILE`) declares which road definitions the masks follow, for the trainer.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

#: Optional file in a dataset's root declaring its masks' targets and pixel size for the trainer:
#: ``{"targets": "band" | "surface" | "both", "pixel_size_m": ...}`` (roadseg.trainer.data.Source).
SOURCE_FILE = "source.json"

SPLITS = ("train", "val", "test")


def shard_name(split: str, index: int, count: int) -> str:
    """File name of one shard, e.g. ``train-00000-of-00004.tfrecord``."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def _png_bytes(array: np.ndarray) -> bytes:
    """Lossless PNG of a uint8 array ([H,W] or [H,W,3]); PIL is much lighter than a TF session here."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _features() -> dict[str, tf.io.FixedLenFeature]:
    import tensorflow as tf

    return {
        "image/png": tf.io.FixedLenFeature([], tf.string),
        "mask/png": tf.io.FixedLenFeature([], tf.string),
        "tile_id": tf.io.FixedLenFeature([], tf.string),
        "bounds": tf.io.FixedLenFeature([4], tf.float32),
        "crs": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    }


def __getattr__(name: str) -> dict[str, tf.io.FixedLenFeature]:
    # FEATURES needs TensorFlow; build it lazily so importing this module (for encode_example
    # in the labeler) does not load TensorFlow.
    if name == "FEATURES":
        return _features()
    raise AttributeError(name)


def encode_example(
    image_rgb_uint8: np.ndarray,
    mask_uint8: np.ndarray,
    tile_id: str,
    bounds: Sequence[float],
    crs: str | None,
    band_uint8: np.ndarray | None = None,
) -> bytes:
    """Serialize one (image, mask) pair as a ``tf.train.Example``, with the centreline band mask if given.

    ``image_rgb_uint8`` is [H,W,3] uint8; ``mask_uint8`` (the road surface) and ``band_uint8`` are [H,W]
    or [H,W,1] uint8 with the same H,W.
    """
    image = np.asarray(image_rgb_uint8)
    mask = np.asarray(mask_uint8)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H,W,3], got {image.dtype} {image.shape}")
    if mask.dtype != np.uint8 or mask.shape != image.shape[:2]:
        raise ValueError(f"mask must be uint8 [H,W] matching the image, got {mask.dtype} {mask.shape}")
    if len(bounds) != 4:
        raise ValueError("bounds must have 4 numbers (minx, miny, maxx, maxy)")
    band = None if band_uint8 is None else np.asarray(band_uint8).reshape(mask.shape)
    from tensorflow.core.example import example_pb2, feature_pb2

    def _bytes(value: bytes) -> feature_pb2.Feature:
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[value]))

    example = example_pb2.Example(
        features=feature_pb2.Features(
            feature={
                "image/png": _bytes(_png_bytes(image)),
                "mask/png": _bytes(_png_bytes(mask)),
                "tile_id": _bytes(tile_id.encode("utf-8")),
                "bounds": feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[float(b) for b in bounds])),
                "crs": _bytes((crs or "").encode("utf-8")),
                **({"band/png": _bytes(_png_bytes(band))} if band is not None else {}),
            }
        )
    )
    return example.SerializeToString()


def parse_example(serialized: tf.Tensor | bytes) -> tuple[tf.Tensor, tf.Tensor]:
    """Decode one serialized example into (image uint8 [H,W,3], mask uint8 [H,W,1]) with tf ops.

    Usable inside ``tf.data.Dataset.map``.
    """
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, _features())
    image = tf.io.decode_png(parsed["image/png"], channels=3)
    mask = tf.io.decode_png(parsed["mask/png"], channels=1)
    return image, mask


def parse_band(serialized: tf.Tensor | bytes) -> np.ndarray | None:
    """The centreline band mask uint8 [H,W] of one serialized example, or None when it has none."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, {"band/png": tf.io.FixedLenFeature([], tf.string, b"")})
    if not parsed["band/png"].numpy():
        return None
    return tf.io.decode_png(parsed["band/png"], channels=1).numpy()[..., 0]


def parse_metadata(serialized: tf.Tensor | bytes) -> dict:
    """The non-pixel fields of one example (tile id, bounds, crs) as plain Python values, for tools and tests."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, _features())
    return {
        "tile_id": parsed["tile_id"].numpy().decode("utf-8"),
        "bounds": [float(v) for v in parsed["bounds"].numpy()],
        "crs": parsed["crs"].numpy().decode("utf-8") or None,
    }
