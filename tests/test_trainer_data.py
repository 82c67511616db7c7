"""The trainer's input pipeline on a real TFRecord shard written with roadseg.tfrecords."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from roadseg.tfrecords import encode_example, shard_name  # noqa: E402
from roadseg.trainer import data  # noqa: E402


def _example(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    mask = np.zeros((40, 48), np.uint8)
    mask[:, 10:16] = 255
    mask[30:, :] = 127  # nodata strip: must survive decoding and augmentation as "ignore"
    return image, mask


@pytest.fixture
def tfrecord_dir(tmp_path):
    with tf.io.TFRecordWriter(str(tmp_path / shard_name("train", 0, 1))) as writer:
        for i in range(3):
            writer.write(encode_example(*_example(i), f"r0000_c{i:04d}", [0, 0, 48, 40], None))
    return tmp_path


def test_source_spec_parsing():
    assert data.Source.parse("a/b:0.5") == data.Source("a/b", 0.5)
    assert data.Source.parse("gs://bucket/ds") == data.Source("gs://bucket/ds", 1.0)
    assert data.Source.parse("gs://bucket/ds:2") == data.Source("gs://bucket/ds", 2.0)
    assert data.Source.parse({"path": "x", "weight": 3}) == data.Source("x", 3.0)


def test_tfrecord_examples_round_trip(tfrecord_dir):
    source = data.Source(str(tfrecord_dir))
    assert data.count_examples(source, "train") == 3
    examples = list(data.iter_examples(source, "train"))
    assert [name for name, _, _ in examples] == ["r0000_c0000", "r0000_c0001", "r0000_c0002"]
    image, mask = _example(1)
    np.testing.assert_array_equal(examples[1][1], image)
    np.testing.assert_array_equal(examples[1][2], mask)


def test_training_batches_keep_mask_values(tfrecord_dir):
    batches = data.training_dataset([data.Source(str(tfrecord_dir))], crop_size=32, batch_size=2, seed=1)
    for images, masks in batches.take(3):
        assert images.shape == (2, 32, 32, 3) and images.dtype == tf.float32
        assert masks.shape == (2, 32, 32, 1) and masks.dtype == tf.uint8
        assert float(tf.reduce_min(images)) >= 0.0 and float(tf.reduce_max(images)) <= 255.0
        assert set(np.unique(masks.numpy())) <= {0, 127, 255}


def test_validation_pads_small_examples_with_ignore(tfrecord_dir):
    (images, masks), *_ = list(data.validation_dataset([data.Source(str(tfrecord_dir))], 64, 4, split="train"))
    assert images.shape == (3, 64, 64, 3)
    assert (masks.numpy()[:, 40:, :, 0] == data.PAD_MASK_VALUE).all()
    assert (masks.numpy()[:, :30, 10:16, 0] == 255).all()


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no 'val' data"):
        data.load_source(data.Source(str(tmp_path)), "val")


def test_images_without_masks_are_named_in_the_error(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "images" / "a.jpg").write_bytes(b"not read")
    with pytest.raises(FileNotFoundError, match=r"none of the 1 images has a mask, e.g. .*train/masks/a\.png"):
        data.load_source(data.Source(str(tmp_path)), "train")


def test_images_without_masks_are_skipped_with_one_warning(tmp_path, caplog):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "masks").mkdir()
    image, mask = _example(0)
    for name in ("a", "b"):
        tf.io.write_file(str(tmp_path / "train" / "images" / f"{name}.png"), tf.io.encode_png(image))
    tf.io.write_file(str(tmp_path / "train" / "masks" / "a.png"), tf.io.encode_png(mask[..., None]))
    source = data.Source(str(tmp_path))
    with caplog.at_level("WARNING", logger="roadseg.trainer.data"):
        assert data.steps_for([source], batch_size=1) == 1
        (loaded,) = list(data.load_source(source, "train"))
    np.testing.assert_array_equal(loaded[1].numpy()[..., 0], mask)
    warnings = [r.getMessage() for r in caplog.records if "without a mask" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].endswith("masks/b.png")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train-data", "{tmp}/absent"], "no 'train' data in {tmp}/absent: the folder does not exist"),
        (
            ["--train-data", "{tmp}", "--crop-size", "100"],
            "invalid training config: crop_size must be a positive multiple of 16",
        ),
        (["--config", "{tmp}/typo.yaml"], "unknown config keys in {tmp}/typo.yaml: epoch"),
        (["--config", "{tmp}/nothere.yaml"], "config file {tmp}/nothere.yaml does not exist"),
    ],
)
def test_train_cli_refuses_bad_input_in_one_line(tmp_path, capsys, args, message):
    """Bad data or config fails before any model is built, with exit code 2 and no traceback."""
    from roadseg.cli import main

    (tmp_path / "typo.yaml").write_text("train_data: [x]\nepoch: 3\n")
    argv = ["train", "--output", str(tmp_path / "run"), *(a.format(tmp=tmp_path) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"roadseg train: error: {message.format(tmp=tmp_path)}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()
