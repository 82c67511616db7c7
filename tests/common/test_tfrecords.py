"""docs/contracts.md §3: encode_example / parse_example round-trip through a real TFRecord file and tf.data."""

from __future__ import annotations

import numpy as np
import pytest


def test_round_trip_through_tf_data(tmp_path):
    import tensorflow as tf
    from roadseg import tfrecords

    rng = np.random.default_rng(3)
    pairs = []
    for size in ((32, 48), (20, 20)):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        mask = rng.choice(np.array([0, 127, 255], dtype=np.uint8), size=size)
        pairs.append((image, mask))
    path = tmp_path / tfrecords.shard_name("train", 0, 1)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i, (image, mask) in enumerate(pairs):
            example = tfrecords.encode_example(image, mask, f"scene/r0000_c{i:04d}", (1.5, 2.5, 3.5, 4.5), "EPSG:32611")
            writer.write(example)
    assert path.name == "train-00000-of-00001.tfrecord"

    dataset = tf.data.TFRecordDataset(str(path)).map(tfrecords.parse_example)
    decoded = [(img.numpy(), msk.numpy()) for img, msk in dataset]
    assert len(decoded) == 2
    for (image, mask), (img, msk) in zip(pairs, decoded, strict=True):
        assert img.dtype == np.uint8 and img.shape == image.shape
        assert msk.shape == (*mask.shape, 1)
        np.testing.assert_array_equal(img, image)
        np.testing.assert_array_equal(msk[..., 0], mask)  # lossless: the ignore value 127 survives

    first = next(iter(tf.data.TFRecordDataset(str(path))))
    meta = tfrecords.parse_metadata(first)
    assert meta == {"tile_id": "scene/r0000_c0000", "bounds": [1.5, 2.5, 3.5, 4.5], "crs": "EPSG:32611"}
    assert set(tfrecords.FEATURES) == {"image/png", "mask/png", "tile_id", "bounds", "crs"}


def test_encode_rejects_mismatched_shapes():
    from roadseg.tfrecords import encode_example

    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="mask must be uint8"):
        encode_example(image, np.zeros((8, 9), np.uint8), "t", (0, 0, 1, 1), None)
    with pytest.raises(ValueError, match="image must be uint8"):
        encode_example(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), "t", (0, 0, 1, 1), None)
