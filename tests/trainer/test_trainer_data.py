"""The trainer's input pipeline on a real TFRecord shard written with roadseg.tfrecords."""

from __future__ import annotations

import numpy as np
import pytest
from utils.paths import REPO

tf = pytest.importorskip("tensorflow")

from roadseg.errors import InvalidInput  # noqa: E402
from roadseg.mask_values import IGNORE  # noqa: E402
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
    batches = data.training_dataset([data.Source(str(tfrecord_dir))], data.Augmentation(32), batch_size=2, seed=1)
    for images, masks in batches.take(3):
        assert images.shape == (2, 32, 32, 3) and images.dtype == tf.float32
        assert masks.shape == (2, 32, 32, 1) and masks.dtype == tf.uint8
        assert float(tf.reduce_min(images)) >= 0.0 and float(tf.reduce_max(images)) <= 255.0
        assert set(np.unique(masks.numpy())) <= {0, 127, 255}


def test_validation_pads_small_examples_with_ignore(tfrecord_dir):
    (images, masks), *_ = list(data.validation_dataset([data.Source(str(tfrecord_dir))], 64, 4, split="train"))
    assert images.shape == (3, 64, 64, 3)
    assert (masks.numpy()[:, 40:, :, 0] == IGNORE).all()
    assert (masks.numpy()[:, :30, 10:16, 0] == 255).all()


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no 'val' data"):
        data.load_examples(data.Source(str(tmp_path)), "val")


def test_images_without_masks_are_named_in_the_error(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "images" / "a.jpg").write_bytes(b"not read")
    with pytest.raises(FileNotFoundError, match=r"none of the 1 images has a mask, e.g. .*train/masks/a\.png"):
        data.load_examples(data.Source(str(tmp_path)), "train")


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
        (loaded,) = data.load_examples(source, "train")
    np.testing.assert_array_equal(loaded[1][..., 0], mask)
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


def test_source_specs_carry_a_pixel_size():
    assert data.Source.parse({"path": "x", "weight": 2, "pixel_size_m": 0.5}) == data.Source("x", 2.0, 0.5)
    with pytest.raises(InvalidInput, match="needs path"):
        data.Source.parse({"path": "x", "pixel_size": 0.5})


def _stripes(period: int = 16, width: int = 4, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Vertical road stripes: ``width`` road pixels every ``period`` pixels."""
    mask = np.zeros((size, size, 1), np.uint8)
    for left in range(0, size, period):
        mask[:, left : left + width] = 255
    image = np.repeat(mask, 3, axis=-1)
    return image, mask


def _edges(mask: np.ndarray) -> int:
    """Road/background transitions across the stripes (they may have been turned by 90 degrees)."""
    road = mask[..., 0] == 255
    across_rows = np.count_nonzero(road[32, 1:] != road[32, :-1])
    across_cols = np.count_nonzero(road[1:, 32] != road[:-1, 32])
    return max(across_rows, across_cols)


@pytest.mark.parametrize(("target_m", "edges"), [(0.5, 4), (1.0, 8), (2.0, 16)])
def test_crops_are_rescaled_to_the_drawn_ground_pixel_size(target_m, edges):
    """A 1 m source shown at 0.5 m has stripes twice as wide (half as many edges per crop), at 2 m twice as many."""
    image, mask = _stripes()
    aug = data.Augmentation(64, pixel_size_range_m=(target_m, target_m), rescale_probability=1.0, photometric="none")
    for seed in range(5):
        crop, crop_mask = data.augment(tf.constant(image), tf.constant(mask), aug, pixel_size_m=1.0, seed=(3, seed))
        assert crop.shape == (64, 64, 3) and crop_mask.shape == (64, 64, 1)
        assert set(np.unique(crop_mask.numpy())) <= {0, 255}
        assert abs(_edges(crop_mask.numpy()) - edges) <= 1


def test_sources_without_pixel_size_keep_their_scale():
    image, mask = _stripes()
    aug = data.Augmentation(64, scale_range=(1.0, 1.0), pixel_size_range_m=(0.5, 0.5), rescale_probability=1.0)
    _, crop_mask = data.augment(tf.constant(image), tf.constant(mask), aug, pixel_size_m=None)
    assert abs(_edges(crop_mask.numpy()) - 8) <= 1


def test_strong_photometric_changes_appearance_within_range():
    image = tf.constant(np.full((64, 64, 3), 128.0, np.float32))
    outputs = [data.photometric(image, "strong", seed=(5, i)).numpy() for i in range(8)]
    for out in outputs:
        assert out.shape == (64, 64, 3) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 255.0
    assert len({round(float(out.mean()), 1) for out in outputs}) > 4
    np.testing.assert_array_equal(data.photometric(image, "none").numpy(), image.numpy())


def test_training_mix_rescales_each_source_with_its_own_pixel_size(tfrecord_dir):
    sources = [data.Source(str(tfrecord_dir), 1.0, 1.0), data.Source(str(tfrecord_dir), 1.0, None)]
    aug = data.Augmentation(32, pixel_size_range_m=(0.3, 1.5), photometric="strong")
    images, masks = next(iter(data.training_dataset(sources, aug, batch_size=4, seed=2)))
    assert images.shape == (4, 32, 32, 3) and masks.shape == (4, 32, 32, 1)
    assert set(np.unique(masks.numpy())) <= {0, 127, 255}


def test_export_evaluation_specs_keep_storage_urls_whole():
    from roadseg.trainer.export import _parse_eval_spec

    assert _parse_eval_spec("gs://bucket/dataset") == ("gs://bucket/dataset", ["val"])
    assert _parse_eval_spec("gs://bucket/dataset:test,val") == ("gs://bucket/dataset", ["test", "val"])
    assert _parse_eval_spec("../data/cil:val") == ("../data/cil", ["val"])


@pytest.mark.parametrize(
    "path", sorted([*(REPO / "configs").glob("*.yaml"), *(REPO / "configs" / "experiments").glob("*.yaml")]), ids=str
)
def test_every_config_file_loads_and_validates(path):
    from roadseg.trainer.train import TrainConfig

    config = TrainConfig.load(path)
    config.validate()
    assert TrainConfig.load(path).augmentation() == config.augmentation()
    assert [data.Source.parse(spec) for spec in config.train_data]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"photometric": "extreme"}, "photometric must be one of none, basic, strong"),
        ({"pixel_size_range_m": (1.5, 0.3)}, "pixel_size_range_m must be two positive numbers"),
        ({"rescale_probability": 2}, "rescale_probability must be within"),
        ({"train_data": [{"path": "x", "weights": 1}]}, "bad data source"),
    ],
)
def test_bad_augmentation_settings_are_refused_up_front(overrides, message):
    from roadseg.trainer.train import TrainConfig

    with pytest.raises(InvalidInput, match=message):
        TrainConfig(**{"train_data": ["x"], **overrides}).validate()


def test_the_same_seed_gives_the_same_crop_and_another_seed_another():
    image, mask = _stripes()
    aug = data.Augmentation(64, pixel_size_range_m=(0.3, 2.0), photometric="strong")
    first = data.augment(tf.constant(image), tf.constant(mask), aug, 1.0, seed=(7, 11))
    again = data.augment(tf.constant(image), tf.constant(mask), aug, 1.0, seed=(7, 11))
    other = data.augment(tf.constant(image), tf.constant(mask), aug, 1.0, seed=(7, 12))
    np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
    np.testing.assert_array_equal(first[1].numpy(), again[1].numpy())
    assert not np.array_equal(first[0].numpy(), other[0].numpy())


def test_a_resumed_pipeline_continues_with_the_very_batches_of_an_uninterrupted_one(tfrecord_dir, tmp_path):
    """Batch k is a function of (seed, k): starting at step 3 gives batches 3, 4 of a run from step 0."""
    _plain_source(tmp_path / "plain", "surface")
    sources = [data.Source(str(tfrecord_dir), 1.0, 1.0), data.Source(str(tmp_path / "plain"), 2.0, 0.5, "surface")]
    aug = data.Augmentation(32, pixel_size_range_m=(0.3, 2.0), photometric="strong")

    def batches(start: int, count: int) -> list:
        stream = data.training_dataset(sources, aug, 2, seed=9, start_step=start, outputs=2)
        return [(i.numpy(), m.numpy()) for i, m in stream.take(count)]

    straight, resumed = batches(0, 5), batches(3, 2)
    for (image, mask), (image_again, mask_again) in zip(straight[3:], resumed, strict=True):
        np.testing.assert_array_equal(image, image_again)
        np.testing.assert_array_equal(mask, mask_again)
    assert not np.array_equal(straight[0][0], straight[1][0])
    assert straight[0][1].shape == (2, 32, 32, 2)


def _plain_source(root, targets: str):
    """A plain folder source with one 64 px image whose mask is a 12 px wide vertical road."""
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir()
    image = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64, 1), np.uint8)
    mask[:, 26:38] = 255
    tf.io.write_file(str(root / "train" / "images" / "a.png"), tf.io.encode_png(image))
    tf.io.write_file(str(root / "train" / "masks" / "a.png"), tf.io.encode_png(mask))
    (root / "source.json").write_text(f'{{"targets": "{targets}", "pixel_size_m": 0.5}}')
    return root


def test_surface_sources_get_a_centreline_band_of_the_set_ground_width(tmp_path):
    """A 12 px (6 m at 0.5 m) road: its band of 3 m is 6 px wide around the road's middle."""
    source = data.Source(str(_plain_source(tmp_path, "surface")))
    ((_, masks),) = data.load_examples(source, "train", outputs=2, band_width_m=3.0)
    surface, band = masks[..., 0], masks[..., 1]
    assert (surface[:, 26:38] == 255).all() and (surface[:, :26] == 0).all()
    road_columns = np.flatnonzero((band[10:54] == 255).all(axis=0))
    assert 5 <= len(road_columns) <= 7 and abs(road_columns.mean() - 31.5) <= 1
    assert set(np.unique(band)) == {0, 255}


def test_band_sources_leave_the_surface_to_be_ignored(tmp_path):
    source = data.Source(str(_plain_source(tmp_path, "band")))
    ((_, masks),) = data.load_examples(source, "train", outputs=2)
    assert (masks[..., 0] == IGNORE).all()
    assert (masks[..., 1][:, 26:38] == 255).all()


def test_surface_sources_need_a_pixel_size_for_their_band(tmp_path):
    root = _plain_source(tmp_path, "surface")
    (root / "source.json").write_text('{"targets": "surface"}')
    with pytest.raises(InvalidInput, match="needs pixel_size_m"):
        data.load_examples(data.Source(str(root)), "train", outputs=2)
    with pytest.raises(InvalidInput, match="targets must be one of"):
        data.Source.parse({"path": "x", "targets": "lanes"})


def test_label_run_datasets_carry_both_road_definitions_to_the_trainer(tmp_path):
    """TFRecords with band/png and a source.json saying "both": the surface from mask/png, the band from band/png."""
    image, surface = _example(0)
    band = np.zeros_like(surface)
    band[:, 12:14] = 255
    with tf.io.TFRecordWriter(str(tmp_path / shard_name("train", 0, 1))) as writer:
        writer.write(encode_example(image, surface, "t0", [0, 0, 48, 40], None, band))
    (tmp_path / "source.json").write_text('{"targets": "both"}')
    ((loaded_image, masks),) = data.load_examples(data.Source(str(tmp_path)), "train", outputs=2)
    np.testing.assert_array_equal(loaded_image, image)
    np.testing.assert_array_equal(masks[..., 0], surface)
    np.testing.assert_array_equal(masks[..., 1], band)
