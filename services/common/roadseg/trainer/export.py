"""Versioned SavedModel export (docs/contracts.md §5): what TF Serving and the gateway load.

``<model_dir>/<version>/`` holds a SavedModel whose ``serving_default`` signature takes ``images``
uint8 [N,H,W,3] of any H, W and returns ``{"probabilities": float32 [N,H,W,C]}``, a channel per output
the card lists (``outputs``: road surface and centreline band; absent: one road channel). Padding to a
multiple of 16 (and cropping back) and the ImageNet preprocessing are in the graph, so clients send
raw pixels. ``model_card.json`` beside it says how the model was made and how good it is.

Test-time augmentation (``tta``) is baked into the graph too, so TF Serving and the in-process gateway
serve the same function that ``roadseg evaluate`` measured.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml

from roadseg.config import REPO_ROOT, STRIDE, get_settings
from roadseg.documents import ModelCard
from roadseg.errors import InvalidInput
from roadseg.model_versions import (
    CARD,
    DEFAULT_SIGNATURE,
    TTA_OPTIONS,
    TTA_VIEWS,
    is_url,
    latest_version,
    read_card,
    resolve_savedmodel,
)
from roadseg.storage import split_suffix
from roadseg.trainer import TARGETS
from roadseg.trainer.checkpoints import COMMAND, CONFIG, load_average, snapshot_step, snapshots, window_of
from roadseg.trainer.serving_model import load_exported_weights, serving_model

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    #: What an export serves: uint8 images [N,H,W,3] -> ``{"probabilities": float32 [N,H,W,C]}`` (a tf.function).
    Serve = Callable[[tf.Tensor], dict[str, tf.Tensor]]

log = logging.getLogger(__name__)


def serving_function(keras_model: keras.Model, tta: str = "none", jit_compile: bool = False) -> Serve:
    """A tf.function from uint8 images of any size to road probabilities of the same size.

    With ``tta``, the probabilities are the mean over the views of :data:`TTA_VIEWS`, each mapped back
    (un-mirrored, then turned back). ``jit_compile`` compiles it with XLA (``bench/model_call.py``
    measures whether that pays on the machine at hand).
    """
    import tensorflow as tf

    if tta not in TTA_VIEWS:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {', '.join(TTA_VIEWS)}")
    views = TTA_VIEWS[tta]

    def view_probabilities(padded: tf.Tensor, turns: int, mirror: bool) -> tf.Tensor:
        x = tf.image.rot90(padded, turns) if turns else padded
        x = tf.reverse(x, axis=[2]) if mirror else x
        p = tf.sigmoid(tf.cast(keras_model(x, training=False), tf.float32))
        p = tf.reverse(p, axis=[2]) if mirror else p
        return tf.image.rot90(p, -turns % 4) if turns else p

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")], jit_compile=jit_compile
    )
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        pad_h = (STRIDE - height % STRIDE) % STRIDE
        pad_w = (STRIDE - width % STRIDE) % STRIDE
        # Zero padding, as the training crops are padded: the model has seen black borders.
        padded = tf.pad(tf.cast(images, tf.float32), [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        probabilities = tf.add_n([view_probabilities(padded, t, m) for t, m in views]) / len(views)
        return {"probabilities": probabilities[:, :height, :width, :]}

    return serve


def code_version() -> str:
    """``git rev-parse HEAD`` of the checkout (changes not yet committed are not named), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head


def export_savedmodel(keras_model: keras.Model, out_dir: str | Path, card: dict, tta: str = "none") -> Path:
    """Write the SavedModel and ``model_card.json`` to ``out_dir`` (atomically: built aside, then renamed).

    ``card`` is completed with ``created`` and ``code_version`` when missing, and gets ``tta``: the
    test-time augmentation of the default signature (a key of :data:`TTA_VIEWS`). Every export also
    has one signature ``tta_<name>`` per :data:`~roadseg.model_versions.TTA_OPTIONS`, so a request
    can trade accuracy for speed (listed in the card's ``tta_options``). What is saved is the
    model's serving copy (:func:`~roadseg.trainer.serving_model.serving_model`: float32, BatchNorms
    folded), the same function in fewer passes over memory.
    """
    import tensorflow as tf

    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; pick a new version")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    card = ModelCard.model_validate(
        {
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "code_version": code_version(),
            **card,
            "tta": tta,
            "tta_options": sorted({tta, *TTA_OPTIONS}),
        }
    ).dump()
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir.parent) as tmp:
        staging = Path(tmp) / "model"
        # A plain tf.Module rather than keras.export.ExportArchive: the latter writes every variable twice
        # (its `variables` and `_all_variables` lists), doubling the model on disk (~35 MB instead of ~18 MB).
        keras_model = serving_model(keras_model)
        module = tf.Module()
        module.model_variables = [v.value for v in keras_model.variables]
        module.serve = serving_function(keras_model, tta)
        signatures = {DEFAULT_SIGNATURE: module.serve}
        for option in TTA_OPTIONS:
            if option != tta:
                function = serving_function(keras_model, option)
                setattr(module, f"serve_{option}", function)  # tracked by the module, saved once
                signatures[f"tta_{option}"] = function
        tf.saved_model.save(module, str(staging), signatures=signatures)
        (staging / CARD).write_text(json.dumps(card, indent=2) + "\n")
        # Check the written graph really loads and serves before publishing it.
        served = tf.saved_model.load(str(staging)).signatures[DEFAULT_SIGNATURE]
        probe = served(images=tf.zeros([1, 20, 36, 3], tf.uint8))["probabilities"]
        if tuple(probe.shape) != (1, 20, 36, len(card.get("outputs") or [None])):
            raise RuntimeError(f"exported model returned shape {tuple(probe.shape)} for a 20x36 probe")
        staging.rename(out_dir)
    log.info("exported SavedModel to %s", out_dir)
    return out_dir


def _upload(local: Path, model_dir: str, version: int) -> None:
    """Copy an exported version folder to a storage URL (e.g. the gs:// folder TF Serving watches).

    The model card and saved_model.pb go last, so a watcher never sees a graph without its variables.
    """
    from roadseg.storage import storage_from_url

    storage = storage_from_url(model_dir)
    files = sorted((p for p in local.rglob("*") if p.is_file()), key=lambda p: p.name in (CARD, "saved_model.pb"))
    for path in files:
        storage.write_file(f"{version}/{path.relative_to(local).as_posix()}", path)


def export_checkpoint(
    checkpoint: str,
    model_dir: str | Path,
    version: int | None = None,
    evaluate: Sequence[str] = (),
    command: str = "",
    train_command: str | None = None,
    pixel_size_m: float | None = None,
    tta: str = "none",
    predict_at: float | None = None,
    average: int = 1,
    plain_pixel_size: Literal["auto"] | None = None,
) -> Path:
    """Export a ``.keras`` training checkpoint as the next version, measuring it on ``evaluate`` data.

    ``pixel_size_m`` (the ground resolution the model was trained for) goes into the card; the gateway
    resamples georeferenced images of other resolutions to it. A run trained across resolutions records
    its range instead, unless ``predict_at`` (metres, chosen on val with ``roadseg validate --predict-at``)
    asks for every image at one pixel size (:func:`resolution_fields`). ``tta`` is a key of :data:`TTA_VIEWS`.
    ``average`` > 1 exports the mean of the weights of that many kept checkpoints of the run ending at
    ``checkpoint`` (a ``checkpoints/step-NNNNNN.keras``; :func:`~roadseg.trainer.checkpoints.load_average`).
    ``plain_pixel_size`` (``auto``, chosen on val with ``roadseg validate --plain-pixel-size withheld|auto``) is
    what a plain image given no pixel size is predicted at; None: the model's own resolution.

    ``model_dir`` is a local folder or a storage URL (``gs://``: exported locally, then uploaded).
    ``evaluate`` items are ``PATH:SPLIT[,SPLIT]``. The card's threshold is the best-F1 threshold over the
    *validation* splits among them (test splits only report), and every figure is measured on the exported
    SavedModel, i.e. on what is served.
    """
    from roadseg.storage import split_url

    storage, key = split_url(checkpoint)
    # split_url gives the checkpoint's folder: the run's checkpoints/, where its kept copies lie beside it.
    keys = window_of(snapshots(storage, ""), snapshot_step(key), average) if average > 1 else [key]
    model = load_average(storage, keys)  # the optimizer state is not exported
    # A run folder holds config.yaml, command.txt and checkpoints/<name>.keras (see roadseg.trainer.train).
    run_storage, _ = split_url(checkpoint.rsplit("/", 2)[0] + "/" + CONFIG)
    run_config = yaml.safe_load(run_storage.read_text(CONFIG)) if run_storage.exists(CONFIG) else {}
    if train_command is None and run_storage.exists(COMMAND):
        train_command = " && ".join(line for line in run_storage.read_text(COMMAND).splitlines() if line)
    version = version or (latest_version(model_dir) or 0) + 1
    if pixel_size_m is None and run_config.get("init_from"):
        pixel_size_m = _inherited_pixel_size(run_config["init_from"])
    card = {
        # The name TF Serving and the gateway serve it under, not the (maybe staging) folder's name.
        "name": get_settings().model_name,
        "version": version,
        "backbone": run_config.get("backbone", model.name.rsplit("_", 1)[-1]),
        "threshold": 0.5,
        **output_fields(run_config),
        "pixel_size_m": pixel_size_m,
        # Trained across resolutions: the gateway resamples only images outside this range.
        **resolution_fields(run_config, predict_at),
        "plain_pixel_size": plain_pixel_size,
        "metrics": {},
        "data": {"train": run_config.get("train_data", []), "val": run_config.get("val_data", [])},
        "config": run_config,
        "checkpoint": checkpoint if average == 1 else f"mean of the {average} kept checkpoints up to {checkpoint}",
        "command": train_command or "",
        "export_command": command,
    }
    return _publish(model, model_dir, version, card, evaluate, tta)


def export_version(
    source: str | Path,
    model_dir: str | Path,
    version: int | None = None,
    evaluate: Sequence[str] = (),
    command: str = "",
    tta: str | None = None,
    plain_pixel_size: Literal["auto"] | None = None,
) -> Path:
    """Export an exported version again, with this code's serving graph: same weights, a new version.

    Exports made before :mod:`roadseg.trainer.serving_model` serve Keras' slower graph; re-exporting one
    makes it cheaper to run without training anything. The card keeps how the model was made (data,
    config, training command, checkpoint, resolution, threshold, ``tta`` and ``plain_pixel_size`` unless
    given) and names the source in ``export_command``; its figures are measured again on ``evaluate`` (none
    are copied: they were measured on another graph).
    """
    source_dir = resolve_savedmodel(source)
    old = read_card(source_dir)
    model = keras_model_of(source_dir)
    version = version or (latest_version(model_dir) or 0) + 1
    keep = (
        "backbone",
        "threshold",
        "outputs",
        "thresholds",
        "band_width_m",
        "pixel_size_m",
        "pixel_size_range_m",
        "plain_pixel_size",
        "data",
        "config",
        "checkpoint",
        "command",
    )
    card = {
        **{key: old[key] for key in keep if old.get(key) is not None},
        **({"plain_pixel_size": plain_pixel_size} if plain_pixel_size else {}),
        "name": get_settings().model_name,
        "version": version,
        "export_command": command or f"re-export of {source_dir}",
    }
    return _publish(model, model_dir, version, card, evaluate, tta or old.get("tta") or "none")


def keras_model_of(version_dir: str | Path) -> keras.Model:
    """The Keras model of an exported version: built from its card's backbone and config, weights loaded.

    ``build_model``'s defaults stand in for config keys an older card lacks.
    """
    from roadseg.trainer.model import build_model

    card = read_card(version_dir)
    config = card.get("config") or {}
    keys = ("aspp_filters", "decoder_filters", "decoder_stride", "decoder", "outputs")
    architecture = {key: config[key] for key in keys if key in config}
    model = build_model(card.get("backbone") or "mobilenetv2", weights=None, **architecture)
    fresh = load_exported_weights(model, version_dir)
    if fresh:
        raise InvalidInput(f"{version_dir} lacks weights of its own architecture: {', '.join(fresh[:4])}")
    return model


def _publish(
    model: keras.Model, model_dir: str | Path, version: int, card: dict, evaluate: Sequence[str], tta: str
) -> Path:
    """Export to ``<model_dir>/<version>`` (a local folder, or built locally then uploaded to a URL)."""
    if not is_url(model_dir):
        return _export_and_measure(model, Path(model_dir) / str(version), card, evaluate, tta)
    with tempfile.TemporaryDirectory(prefix="roadseg-export-") as tmp:
        local = _export_and_measure(model, Path(tmp) / str(version), card, evaluate, tta)
        _upload(local, str(model_dir), version)
    return Path(str(model_dir).rstrip("/")) / str(version)


def output_fields(run_config: dict) -> dict:
    """The card's ``outputs`` and ``band_width_m`` of a two-output run (nothing for a one-output run)."""
    if run_config.get("outputs", 1) == 1:
        return {}
    return {"outputs": list(TARGETS), "band_width_m": run_config.get("band_width_m")}


def resolution_fields(run_config: dict, predict_at: float | None = None) -> dict[str, Any]:
    """The card's ``pixel_size_m`` / ``pixel_size_range_m`` for a run's export predicting at ``predict_at``.

    None keeps what ``roadseg export`` records by default: the run's training range, inside which images
    are predicted as they are. Metres ask for every image to be resampled to that pixel size.
    """
    if predict_at is None:
        return {"pixel_size_range_m": run_config.get("pixel_size_range_m")}
    return {"pixel_size_m": float(predict_at), "pixel_size_range_m": None}


def _inherited_pixel_size(init_from: str) -> float | None:
    """A fine-tuned model keeps the ground resolution of the version it started from (None if unknown)."""
    try:
        card = read_card(init_from) if is_url(init_from) else read_card(resolve_savedmodel(init_from))
    except (OSError, ValueError) as exc:
        log.warning("cannot read the model card of %s: %s", init_from, exc)
        return None
    return card.get("pixel_size_m")


def _export_and_measure(model: keras.Model, out: Path, card: dict, evaluate: Sequence[str], tta: str) -> Path:
    """Export, then measure each ``evaluate`` source into the card.

    The threshold is the best-F1 one over the validation splits pooled; ``val_mean_iou_road`` is the
    mean over sources of their validation road IoU, the figure that chooses which version ships.
    """
    from roadseg.trainer.evaluate import best_threshold_of, evaluate_model, iou_at

    out = export_savedmodel(model, out, card, tta)
    if not evaluate:
        return out
    card = read_card(out)
    specs = [_parse_eval_spec(spec) for spec in evaluate]
    val_reports = {path: evaluate_model(out, [path], splits=["val"]) for path, splits in specs if "val" in splits}
    if val_reports:
        # One threshold per output, each the best-F1 one over the validation sources scored on that output.
        by_output: dict[str, list[dict]] = {}
        for report in val_reports.values():
            by_output.setdefault(report["summary"]["outputs"][0], []).append(report)
        thresholds = {name: best_threshold_of(reports) for name, reports in by_output.items()}
        if card.get("outputs"):
            card["thresholds"] = {name: thresholds.get(name, 0.5) for name in card["outputs"]}
            card["threshold"] = card["thresholds"][card["outputs"][0]]
        else:
            card["threshold"] = best_threshold_of(list(val_reports.values()))
        card["threshold_selected_on"] = [f"{_source_name(path)}:val" for path in val_reports]
    (out / CARD).write_text(json.dumps(ModelCard.model_validate(card).dump(), indent=2) + "\n")  # thresholds in
    card["metrics"] = {
        f"{_source_name(path)}:{'+'.join(splits)}": evaluate_model(out, [path], splits=splits)["summary"]
        for path, splits in specs
    }
    if val_reports:
        chosen = card.get("thresholds") or {}
        card["val_iou_road"] = {
            _source_name(path): iou_at(report, chosen.get(report["summary"]["outputs"][0], card["threshold"]))
            for path, report in val_reports.items()
        }
        card["val_mean_iou_road"] = float(np.mean(list(card["val_iou_road"].values())))
    (out / CARD).write_text(json.dumps(ModelCard.model_validate(card).dump(), indent=2) + "\n")
    return out


def _source_name(spec: str) -> str:
    """The name a source's figures go under in the card: its folder's name (``=OUTPUT`` left out)."""
    from roadseg.trainer.evaluate import split_output

    return Path(split_output(spec)[0]).name


def _parse_eval_spec(spec: str) -> tuple[str, list[str]]:
    """``PATH[:SPLIT[,SPLIT]][=OUTPUT]`` -> (``PATH[=OUTPUT]``, splits; default val); ``gs://`` keeps its ``://``."""
    from roadseg.trainer.evaluate import split_output

    spec, output = split_output(spec)
    path, splits = split_suffix(spec)
    return path + (f"={output}" if output else ""), ["val"] if splits is None else splits.split(",")
