"""The trainer end to end on real crops: build, train 2 tiny epochs, resume, export, serve, evaluate.

Everything runs on CPU at toy sizes (64 px crops, 32-channel heads) to stay within CI time; the
numbers asserted are shapes, counts and consistency between the Keras model and the SavedModel.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from utils.paths import REPO
from utils.synthetic import write_road_dataset

tf = pytest.importorskip("tensorflow")

from roadseg.model_versions import latest_version, read_card  # noqa: E402
from roadseg.trainer.export import export_savedmodel  # noqa: E402
from roadseg.trainer.model import build_model  # noqa: E402


@pytest.mark.parametrize("backbone", ["mobilenetv2", "resnet50"])
def test_model_output_matches_input_size(backbone):
    model = build_model(backbone, weights=None, aspp_filters=16, decoder_filters=16)
    for height, width in [(32, 32), (64, 96)]:
        logits = model(np.zeros((1, height, width, 3), np.float32), training=False)
        assert tuple(logits.shape) == (1, height, width, 1)
        assert logits.dtype == tf.float32


def test_backbone_has_output_stride_16():
    model = build_model("mobilenetv2", weights=None, aspp_filters=16, decoder_filters=16)
    backbone = model.get_layer("backbone")
    high, low = backbone(np.zeros((1, 128, 64, 3), np.float32))
    assert tuple(high.shape[1:3]) == (8, 4)
    assert tuple(low.shape[1:3]) == (32, 16)


def _small_dataset(shared_dir: Path, root: Path) -> Path:
    """A plain folder dataset with 4 train and 2 val Massachusetts crops (symlinks, not copies)."""
    source = shared_dir / "data" / "massachusetts-crops"
    for split, count in (("train", 4), ("val", 2)):
        images = sorted((source / split / "images").iterdir())[:count]
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True)
        for image in images:
            (root / split / "images" / image.name).symlink_to(image)
            mask = source / split / "masks" / f"{image.stem}.png"
            (root / split / "masks" / mask.name).symlink_to(mask)
    return root


def _tiny_config(data: Path, run: Path, **overrides):
    """A CPU-sized run: 64 px crops, batches of 2, 2 steps per epoch, 16-channel heads, random weights."""
    from roadseg.trainer.train import TrainConfig

    settings = dict(
        output=str(run),
        train_data=[f"{data}:1"],
        weights=None,
        crop_size=64,
        batch_size=2,
        steps_per_epoch=2,
        aspp_filters=16,
        decoder_filters=16,
    )
    return TrainConfig(**{**settings, **overrides})


@pytest.mark.slow  # ~1 min on two cores: three epochs, an export, a served graph and an evaluation
def test_train_resume_export_serve(tmp_path, caplog):
    from roadseg.trainer.checkpoints import LAST, load_checkpoint
    from roadseg.trainer.evaluate import evaluate_model
    from roadseg.trainer.export import export_checkpoint
    from roadseg.trainer.train import train

    caplog.set_level(logging.INFO)
    data = write_road_dataset(tmp_path / "data", {"train": 4, "val": 2})
    run = tmp_path / "run"
    config = _tiny_config(data, run, val_data=[str(data)], val_crop_size=96, epochs=2)
    assert train(config, verbose=0, command="roadseg train test")["epoch"] == 2
    assert json.loads((run / "state.json").read_text())["epoch"] == 2
    assert (run / "config.yaml").read_text() == config.to_yaml()
    assert int(load_checkpoint(_storage(run), LAST).optimizer.iterations) == 4

    config.epochs = 3
    caplog.clear()
    assert train(config, resume=True, verbose=0, command="roadseg train test --resume")["epoch"] == 3
    assert "resuming after epoch 2 (optimizer step 4)" in caplog.text
    assert int(load_checkpoint(_storage(run), LAST).optimizer.iterations) == 6
    rows = (run / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["epoch", "1", "2", "3"]
    assert _tensorboard_steps(run / "tensorboard", "road_iou") == [1, 2, 3]

    models = tmp_path / "models"
    out = export_checkpoint(str(run / "checkpoints" / "last.keras"), models, evaluate=[f"{data}:val"])
    assert out == models / "1" and latest_version(models) == 1
    card = read_card(out)
    assert card["name"] == "roads"  # ROADSEG_MODEL_NAME, whatever the export folder is called
    assert card["val_iou_road"]["data"] == pytest.approx(card["val_mean_iou_road"])
    assert card["command"] == "roadseg train test && roadseg train test --resume"
    assert card["config"]["crop_size"] == 64
    assert 0 < card["threshold"] < 1
    summary = card["metrics"]["data:val"]
    assert summary["tiles"] == 2
    assert card["val_iou_road"]["data"] == pytest.approx(summary["iou_road"], abs=1e-3)

    # The served graph equals the Keras model on a size that is not a multiple of 16.
    keras_model = load_checkpoint(_storage(run), LAST)
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    image = np.random.default_rng(1).integers(0, 256, (1, 50, 70, 3), dtype=np.uint8)
    probabilities = serve(images=tf.constant(image))["probabilities"].numpy()
    assert probabilities.shape == (1, 50, 70, 1) and probabilities.dtype == np.float32
    padded = np.zeros((1, 64, 80, 3), np.float32)
    padded[:, :50, :70] = image
    expected = tf.sigmoid(keras_model(padded, training=False)).numpy()[:, :50, :70]
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)

    report = evaluate_model(models, [str(data)], splits=["val"], out=tmp_path / "report")
    assert report["summary"]["threshold"] == card["threshold"]
    # The figures the export wrote into the card are what evaluating the exported model measures.
    for key in ("tiles", "iou_road", "precision", "recall", "relaxed_f1"):
        assert report["summary"][key] == pytest.approx(summary[key], abs=1e-6), key
    assert len(report["thresholds"]) == 99
    written = tmp_path / "report"
    assert json.loads((written / "report.json").read_text()) == json.loads(json.dumps(report))
    assert len((written / "tiles.csv").read_text().splitlines()) == 1 + 2  # a header, the 2 val images
    assert len((written / "thresholds.csv").read_text().splitlines()) == 1 + 99
    assert (written / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # ~50 s on two cores
def test_mixed_precision_run_exports_a_float32_graph(tmp_path, caplog, recwarn):
    """A mixed_float16 run (what GPUs get) trains, resumes with its optimizer state, exports float32 compute."""
    import keras
    from roadseg.trainer.export import export_checkpoint
    from roadseg.trainer.train import train

    data = write_road_dataset(tmp_path / "data", {"train": 4})
    run = tmp_path / "run"
    # Six steps: the loss scale starts at 2**15 and halves at every overflowing step, so the first steps
    # of a random model may all be skipped; by the sixth some are applied whatever crops were drawn.
    config = _tiny_config(data, run, epochs=1, precision="mixed_float16", steps_per_epoch=6)
    caplog.set_level(logging.INFO)
    assert train(config, verbose=0)["epoch"] == 1
    assert keras.mixed_precision.global_policy().name == "float32"
    trained = _load_mixed(run)
    assert trained.get_layer("aspp_1x1_conv").dtype_policy.compute_dtype == "float16"
    assert isinstance(trained.optimizer, keras.optimizers.LossScaleOptimizer)
    # A loss-scaled optimizer skips steps whose gradients overflow: count the applied ones.
    applied = int(trained.optimizer.iterations)
    assert applied >= 1

    config.epochs = 2
    caplog.clear()
    assert train(config, resume=True, verbose=0)["epoch"] == 2
    assert f"resuming after epoch 1 (optimizer step {applied})" in caplog.text
    assert not [w for w in recwarn if "Skipping variable loading for optimizer" in str(w.message)]
    assert keras.mixed_precision.global_policy().name == "float32"
    trained = _load_mixed(run)
    assert int(trained.optimizer.iterations) >= applied

    out = export_checkpoint(str(run / "checkpoints" / "last.keras"), tmp_path / "models")
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    graph = serve.graph.as_graph_def()
    dtypes = {attr.type for fn in graph.library.function for node in fn.node_def for attr in node.attr.values()}
    assert tf.float16.as_datatype_enum not in dtypes, "the exported graph computes in float16"
    image = np.random.default_rng(2).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    served = serve(images=tf.constant(image))["probabilities"].numpy()
    mixed = tf.sigmoid(trained(image.astype(np.float32), training=False)).numpy()
    # Same weights; only float16 rounding separates the mixed-precision model from the export.
    np.testing.assert_allclose(served, mixed, atol=0.02)


def _tensorboard_steps(folder: Path, tag: str) -> list[int]:
    """The steps at which the event files in ``folder`` (one per run or resume) hold scalar ``tag``."""
    steps = []
    for path in sorted(folder.iterdir()):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return sorted(steps)


def _load_mixed(run: Path):
    """The run's last checkpoint loaded under the mixed_float16 policy it was trained with."""
    import keras
    from roadseg.trainer.checkpoints import LAST, load_checkpoint

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return load_checkpoint(_storage(run), LAST)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _storage(run: Path):
    from roadseg.storage import storage_from_url

    return storage_from_url(str(run))


def test_export_refuses_to_overwrite_a_version(tmp_path):
    model = build_model(weights=None, aspp_filters=8, decoder_filters=8)
    (tmp_path / "1").mkdir()
    with pytest.raises(FileExistsError):
        export_savedmodel(model, tmp_path / "1", {"name": "roads"})
    assert latest_version(tmp_path) is None


@pytest.mark.parametrize("tta", ["flip", pytest.param("d4", marks=pytest.mark.slow)])  # d4: 8 views, ~40 s
def test_test_time_augmentation_averages_the_views_mapped_back(tmp_path, tta):
    """Each view (turned k quarters, maybe mirrored) is predicted, mapped back and averaged, on a
    non-square image whose size is not a multiple of 16 (padding comes before the views)."""
    model = build_model(weights=None, aspp_filters=8, decoder_filters=8)
    out = export_savedmodel(model, tmp_path / "1", {"name": "roads"}, tta=tta)
    assert read_card(out)["tta"] == tta
    image = np.random.default_rng(2).integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    served = tf.saved_model.load(str(out)).signatures["serving_default"](images=tf.constant(image))
    padded = np.zeros((2, 48, 64, 3), np.float32)
    padded[:, :37, :53] = image
    views = [(0, False), (0, True)] if tta == "flip" else [(k, m) for m in (False, True) for k in range(4)]
    mean = np.zeros((2, 48, 64, 1), np.float32)
    for turns, mirror in views:
        view = np.rot90(padded, turns, axes=(1, 2))
        view = view[:, :, ::-1] if mirror else view
        prob = tf.sigmoid(model(np.ascontiguousarray(view), training=False)).numpy()
        prob = prob[:, :, ::-1] if mirror else prob
        mean += np.rot90(prob, -turns, axes=(1, 2)) / len(views)
    np.testing.assert_allclose(served["probabilities"].numpy(), mean[:, :37, :53], atol=1e-5)
    plain = tf.sigmoid(model(padded, training=False)).numpy()[:, :37, :53]
    assert np.abs(plain - mean[:, :37, :53]).max() > 1e-3  # the views really differ

    # Every export also serves the cheaper choices per request (signatures tta_<name>).
    from roadseg.errors import InvalidInput
    from roadseg.inference.predictor import EmbeddedPredictor

    assert read_card(out)["tta_options"] == sorted({tta, "none", "flip"})
    predictor = EmbeddedPredictor(out)
    np.testing.assert_allclose(predictor.predict(image), mean[:, :37, :53], atol=1e-5)
    np.testing.assert_allclose(predictor.predict(image, "none"), plain, atol=1e-5)
    with pytest.raises(InvalidInput, match=r"roads v\? offers test-time augmentation .*got 'rot90'"):
        predictor.predict(image, "rot90")


SHIPPED = REPO / "models" / "roads"
HAS_SHIPPED = latest_version(SHIPPED) is not None


@pytest.mark.skipif(not HAS_SHIPPED, reason="no shipped model")
def test_shipped_model_finds_roads(shared_dir, tmp_path):
    from roadseg.trainer.evaluate import evaluate_model

    data = _small_dataset(shared_dir, tmp_path / "data")
    report = evaluate_model(SHIPPED, [str(data)], splits=["val"])
    assert report["summary"]["tiles"] == 2
    assert report["summary"]["iou_road"] > 0.3
    assert read_card(SHIPPED / str(latest_version(SHIPPED)))["threshold"] == report["summary"]["threshold"]


def _one_full_tile(shared_dir: Path, root: Path) -> Path:
    """A folder dataset holding one 1500 x 1500 Massachusetts val tile, its JPEG saved as PNG.

    Lossless, so the dataset reader (Pillow) and ``roadseg predict`` (GDAL) see the same pixels: their
    JPEG decoders differ by one grey level here and there, which moves a few pixels across the threshold.
    """
    from PIL import Image

    source = shared_dir / "data" / "massachusetts-tiles" / "val"
    image = sorted((source / "images").iterdir())[0]
    for sub in ("images", "masks"):
        (root / "val" / sub).mkdir(parents=True)
    Image.open(image).convert("RGB").save(root / "val" / "images" / f"{image.stem}.png")
    (root / "val" / "masks" / f"{image.stem}.png").symlink_to(source / "masks" / f"{image.stem}.png")
    return root


@pytest.mark.skipif(not HAS_SHIPPED, reason="no shipped model")
def test_evaluation_scores_whole_images_per_source_like_roadseg_predict(shared_dir, tmp_path):
    """A 1500 px tile is scored whole, through the CLI's sliding windows: its IoU equals that of `roadseg predict`."""
    from PIL import Image
    from roadseg import metrics
    from roadseg.cli import main
    from roadseg.trainer.evaluate import evaluate_model

    crops = _small_dataset(shared_dir, tmp_path / "crops")
    tiles = _one_full_tile(shared_dir, tmp_path / "tiles")
    report = evaluate_model(SHIPPED, [str(crops), str(tiles)], splits=["val"])
    assert set(report["sources"]) == {"crops", "tiles"}
    assert report["sources"]["crops"]["tiles"] == 2 and report["sources"]["tiles"]["tiles"] == 1
    ious = [source["iou_road"] for source in report["sources"].values()]
    assert report["summary"]["mean_source_iou_road"] == pytest.approx(sum(ious) / 2)
    (row,) = [row for row in report["tiles"] if row["data"] == "tiles"]
    assert (row["height"], row["width"]) == (1500, 1500)
    assert row["iou_road"] > 0.2

    image = next((tiles / "val" / "images").iterdir())
    out = tmp_path / "predicted"
    assert main(["predict", str(image), "--out", str(out), "--model", str(SHIPPED / str(latest_version(SHIPPED)))]) == 0
    pred = np.asarray(Image.open(out / f"{image.stem}.png")) == 255
    truth = np.asarray(Image.open(tiles / "val" / "masks" / f"{image.stem}.png"))
    assert metrics.iou_scores(pred, truth)["iou_road"] == pytest.approx(row["iou_road"], abs=1e-4)


def test_stride2_decoder_starts_from_a_stride4_export(tmp_path):
    """The stride-2 decoder keeps every layer of the stride-4 model: an export initialises all but its new stage."""
    from roadseg.trainer.serving_model import load_exported_weights

    small = {"weights": None, "aspp_filters": 16, "decoder_filters": 16}
    stride4 = build_model(**small)
    export_savedmodel(stride4, tmp_path / "1", {"name": "t"})
    stride2 = build_model(**small, decoder_stride=2)
    image = np.random.default_rng(3).integers(0, 256, (1, 48, 80, 3)).astype(np.float32)
    assert tuple(stride2(image).shape) == (1, 48, 80, 1)

    fresh = load_exported_weights(stride2, tmp_path / "1")
    assert fresh and all(name.startswith(("decoder_s2_", "logits_stride2")) for name in fresh)
    copied = stride2.get_layer("decoder_sep2_conv").kernel.numpy()
    np.testing.assert_array_equal(copied, stride4.get_layer("decoder_sep2_conv").kernel.numpy())
    # Everything but logits_stride4 (kernel, bias) carries over; the stride-2 stage adds 14 variables.
    assert len(fresh) == 14 and len(stride2.variables) - len(fresh) == len(stride4.variables) - 2
    with pytest.raises(Exception, match="does not match this architecture"):
        load_exported_weights(build_model(weights=None, aspp_filters=8, decoder_filters=16), tmp_path / "1")


def test_narrower_head_keeps_the_strongest_groups_of_an_export(tmp_path):
    """A narrower ASPP and decoder keep whole GroupNorm groups of the export, chosen by their scales.

    The export's weakest half of the groups of every narrowed block is zeroed (GroupNorm scale and
    shift 0: those channels are exactly 0 after the ReLU), so keeping the other half must compute the
    same logits: every reader of a narrowed block (concat offsets, depthwise convs, GroupNorm groups of
    the next block, the logits) took the same channels.
    """
    from roadseg.trainer.narrow import head_indices
    from roadseg.trainer.serving_model import load_exported_weights

    wide = build_model(weights=None, aspp_filters=32, decoder_filters=32)
    rng = np.random.default_rng(5)
    aspp = ["aspp_1x1", "aspp_r6", "aspp_r12", "aspp_r18", "aspp_pool_proj", "aspp_out"]
    for block in [*aspp, "decoder_sep1", "decoder_sep2"]:
        norm = wide.get_layer(f"{block}_gn")
        groups = np.zeros(4)
        groups[rng.choice(4, 2, replace=False)] = 1.0  # two of four groups of 8 survive, not the leading ones
        alive = np.repeat(groups, 8)
        norm.gamma.assign(norm.gamma.numpy() * alive * rng.uniform(0.5, 2.0, 32))
        norm.beta.assign(alive * rng.uniform(-0.2, 0.2, 32))
    export_savedmodel(wide, tmp_path / "1", {"name": "t"})
    narrow = build_model(weights=None, aspp_filters=16, decoder_filters=16)

    assert load_exported_weights(narrow, tmp_path / "1", head_indices) == []
    image = rng.integers(0, 256, (1, 64, 96, 3)).astype(np.float32)
    expected = wide(image, training=False).numpy()
    assert np.abs(expected).max() > 0.01
    np.testing.assert_allclose(narrow(image, training=False).numpy(), expected, atol=1e-4)
    with pytest.raises(Exception, match="does not match this architecture"):
        load_exported_weights(narrow, tmp_path / "1")  # narrowing is asked for, never implied


def test_unet_decoder_gives_both_outputs_at_full_size():
    model = build_model(weights=None, decoder="unet", decoder_filters=16, outputs=2)
    out = model(np.zeros((1, 64, 96, 3), np.float32))
    assert tuple(out.shape) == (1, 64, 96, 2)
    assert model.get_layer("targets_logits_stride2").filters == 2


@pytest.mark.slow  # ~2 min on two cores: three training processes
def test_two_output_run_resumes_exactly_and_serves_both_outputs(tmp_path, capsys):
    """Two epochs straight and one epoch + `roadseg train --resume RUN_DIR` end with the same weights;
    the export serves surface and centreline, each with a threshold chosen on val; `roadseg predict`
    writes both masks; `roadseg validate` measures the kept checkpoints.

    The runs are processes with TensorFlow's deterministic ops on one thread: Adam's first steps move a
    weight by about the learning rate whatever the gradient's size, so the sign of a gradient near zero,
    which threaded sums may flip, would otherwise show as a difference of ~1e-3 between any two runs.
    """
    import os
    import subprocess
    import sys

    import yaml
    from roadseg.cli import main
    from roadseg.trainer.checkpoints import LAST, load_checkpoint
    from roadseg.trainer.export import export_checkpoint

    data = write_road_dataset(tmp_path / "data", {"train": 4, "val": 2})
    source = {"path": str(data), "targets": "surface", "pixel_size_m": 1.0}
    config = _tiny_config(data, tmp_path / "run", train_data=[source], decoder="unet", outputs=2, band_width_m=4.0)
    config.snapshot_every_steps = 2
    env = {**os.environ, "TF_DETERMINISTIC_OPS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    config.epochs = 2
    straight, halted = tmp_path / "straight", tmp_path / "halted"
    # The halted run stops after its first epoch (a time budget spent, as a killed machine would).
    for run, extra in ((straight, []), (halted, ["--max-minutes", "0.0001"])):
        path = tmp_path / f"{run.name}.yaml"
        path.write_text(config.to_yaml())
        command = ["train", "--config", str(path), "--output", str(run), *extra]
        subprocess.run([sys.executable, "-m", "roadseg.cli", *command], env=env, check=True, capture_output=True)
    assert json.loads((halted / "state.json").read_text())["epoch"] == 1
    resume = ["train", "--resume", str(halted)]
    subprocess.run([sys.executable, "-m", "roadseg.cli", *resume], env=env, check=True, capture_output=True)
    a, b = (load_checkpoint(_storage(run), LAST) for run in (straight, halted))
    assert int(b.optimizer.iterations) == 4
    for left, right in zip(a.weights, b.weights, strict=True):
        np.testing.assert_allclose(left.numpy(), right.numpy(), atol=1e-6, err_msg=left.path)
    rows = (halted / "log.csv").read_text().splitlines()
    assert rows[0].split(",")[:3] == ["epoch", "step", "seconds"] and [r.split(",")[1] for r in rows[1:]] == ["2", "4"]

    models = tmp_path / "models"
    out = export_checkpoint(str(straight / "checkpoints" / "last.keras"), models, evaluate=[f"{data}:val=surface"])
    card = read_card(out)
    assert card["outputs"] == ["surface", "band"] and card["band_width_m"] == 4.0
    assert set(card["thresholds"]) == {"surface", "band"} and card["threshold"] == card["thresholds"]["surface"]
    assert card["metrics"]["data:val"]["outputs"] == ["surface"]

    image = sorted((data / "val" / "images").iterdir())[0]
    assert main(["predict", str(image), "--out", str(tmp_path / "pred"), "--model", str(out), "--geojson"]) == 0
    from PIL import Image

    for name in (f"{image.stem}.png", f"{image.stem}.centerline.png"):
        mask = np.asarray(Image.open(tmp_path / "pred" / name))
        assert mask.shape == (96, 96) and set(np.unique(mask)) <= {0, 255}
    assert (tmp_path / "pred" / f"{image.stem}.geojson").is_file()

    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump([source]))
    capsys.readouterr()
    assert main(["validate", str(straight), "--sources", str(sources)]) == 0
    table = capsys.readouterr().out
    assert "| step |" in table and "iou:data=surface" in table
    steps = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert steps == ["2", "4"]

    # Where to predict is chosen on val: each checkpoint again with every image resampled to 2 m (a 96 px
    # val image becomes 48 px for the model); measured rows are not measured twice.
    assert main(["validate", str(straight), "--sources", str(sources), "--predict-at", "trained,2"]) == 0
    rows = [line.split("|")[1:3] for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(step.strip(), at.strip()) for step, at in rows] == [
        ("2", "trained"),
        ("4", "trained"),
        ("2", "2"),
        ("4", "2"),
    ]
    at_2m = export_checkpoint(str(straight / "checkpoints" / "last.keras"), models, predict_at=2.0)
    assert (read_card(at_2m)["pixel_size_m"], read_card(at_2m)["pixel_size_range_m"]) == (2.0, None)

    # The mean of the last two kept checkpoints: weights (batch-norm statistics too) are the mean of theirs;
    # validate measures it at step 4 only (step 2 has no checkpoint before it), export writes it.
    from roadseg.trainer.checkpoints import load_average

    kept = [load_checkpoint(_storage(straight), f"checkpoints/step-00000{s}.keras", compile=False) for s in (2, 4)]
    mean = load_average(_storage(straight), ["checkpoints/step-000002.keras", "checkpoints/step-000004.keras"])
    moving = [i for i, w in enumerate(mean.weights) if "moving_mean" in w.path]
    for i in [0, moving[0], len(mean.weights) - 1]:
        expected = (kept[0].weights[i].numpy() + kept[1].weights[i].numpy()) / 2
        np.testing.assert_allclose(mean.weights[i].numpy(), expected, rtol=1e-6, err_msg=mean.weights[i].path)
    assert not np.allclose(kept[0].weights[0].numpy(), kept[1].weights[0].numpy())
    assert main(["validate", str(straight), "--sources", str(sources), "--average", "2"]) == 0
    rows = [[cell.strip() for cell in line.split("|")[1:4]] for line in capsys.readouterr().out.splitlines()[2:]]
    assert rows[-1] == ["4", "trained", "2"] and len(rows) == 5
    assert main(["validate", str(straight), "--sources", str(sources), "--steps", "4", "--tta", "flip"]) == 0
    rows = [[cell.strip() for cell in line.split("|")[1:5]] for line in capsys.readouterr().out.splitlines()[2:]]
    assert rows[-1] == ["4", "trained", "1", "flip"] and rows[1] == ["4", "trained", "1", "none"] and len(rows) == 6
    averaged = export_checkpoint(str(straight / "checkpoints" / "step-000004.keras"), models, average=2)
    assert read_card(averaged)["checkpoint"].startswith("mean of the 2 kept checkpoints up to ")

    # The shipping rule, measured the same way for both: a version never ships against itself (the mean
    # does not improve), and says why; exit status 1.
    assert main(["validate", "--model", str(out), "--against", str(out), "--sources", str(sources)]) == 1
    verdict = capsys.readouterr().out
    assert "| data | " in verdict and "+0.0000 |" in verdict
    assert "does not ship: val mean" in verdict and "does not improve on" in verdict
