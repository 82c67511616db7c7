"""The training loop: config -> tf.data -> road segmenter -> per-epoch checkpoints in storage.

Everything a run needs to continue lives in its output folder (local path, ``file://`` or ``gs://``):
``config.yaml`` (the echoed config), ``checkpoints/last.keras`` (model + optimizer state, written
every epoch: an "epoch" is ``steps_per_epoch`` steps, the checkpoint interval), ``checkpoints/best.keras``
(best validation road IoU on crops), ``state.json`` (epochs done), ``log.csv`` (step, steps/s, losses,
metrics) and TensorBoard events in ``tensorboard/``. ``resume=True`` reloads ``last.keras`` so the
optimizer continues with the same moments and iteration count, hence the same learning-rate schedule
position, and the data continues at the same batch (batches are a function of the step: see
:func:`roadseg.trainer.data.training_dataset`). A run stopped mid-epoch loses only that epoch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import yaml

from roadseg.errors import InvalidInput, MissingFile
from roadseg.storage import Storage, storage_from_url
from roadseg.trainer import BACKBONES, DECODER_STRIDES, DECODERS, LOSSES, PHOTOMETRIC, PRECISIONS, TARGETS
from roadseg.trainer.checkpoints import (
    BEST,
    COMMAND,
    CONFIG,
    LAST,
    LOG,
    STATE,
    TENSORBOARD,
    load_checkpoint,
    save_to,
    snapshot_key,
)

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from roadseg.trainer.data import Augmentation

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Every knob of a training run; saved as ``config.yaml`` next to the checkpoints."""

    output: str = "var/train"
    #: Sources: "PATH[:WEIGHT]" or {path, weight, pixel_size_m} (see roadseg.trainer.data.Source).
    train_data: list[str | dict] = field(default_factory=list)
    val_data: list[str | dict] = field(default_factory=list)
    backbone: str = "mobilenetv2"
    weights: str | None = "imagenet"
    crop_size: int = 320
    val_crop_size: int = 384
    #: Scale jitter around each source's own resolution (see roadseg.trainer.data.Augmentation).
    scale_range: tuple[float, float] = (0.75, 1.25)
    #: Ground pixel sizes (m) to rescale sources with a known pixel_size_m into; None: jitter only.
    pixel_size_range_m: tuple[float, float] | None = None
    #: Share of crops rescaled into pixel_size_range_m (the rest keep their native resolution, jittered).
    rescale_probability: float = 0.5
    #: Appearance augmentation: none, basic (colour jitter) or strong (+ gamma, blur, noise, JPEG, grey).
    photometric: str = "basic"
    batch_size: int = 8
    epochs: int = 30
    steps_per_epoch: int | None = None
    learning_rate: float = 1e-3
    warmup_epochs: float = 1.0
    lr_floor: float = 0.01
    weight_decay: float = 1e-4
    loss: str = "bce_dice"
    aspp_filters: int = 256
    decoder_filters: int = 256
    #: 4: DeepLabV3+ as published; 2: an extra stride-2 decoder stage for thin roads (model.DECODER_STRIDES).
    decoder_stride: int = 4
    #: "deeplabv3plus" or "unet" (roadseg.trainer.DECODERS); "unet" uses decoder_filters at stride 8.
    decoder: str = "deeplabv3plus"
    #: 1: one road output; 2: road surface and centreline band (roadseg.trainer.TARGETS), each source
    #: providing the targets its ``targets`` names (roadseg.trainer.data.Source).
    outputs: int = 1
    #: Ground width (m) of the centreline band, where it is derived from a surface or from lines.
    band_width_m: float = 7.0
    #: Keep a copy of the checkpoint every this many steps (checkpoints/step-NNNNNN.keras), for
    #: validating the run's history afterwards; a multiple of steps_per_epoch. None: none kept.
    snapshot_every_steps: int | None = None
    max_minutes: float | None = None
    seed: int = 0
    #: An exported SavedModel version (``models/roads/3``) whose weights start the run: fine-tuning.
    init_from: str | None = None
    #: Keras dtype policy: "auto" (mixed_float16 on GPUs, float32 on CPU), or one of PRECISIONS.
    #: Exports always compute in float32, whatever the run trained in.
    precision: str = "auto"

    def validate(self) -> None:
        """Refuse settings that would fail (or silently misbehave) minutes into a run."""
        from roadseg.trainer.data import Source

        problems = []
        for name in ("crop_size", "val_crop_size"):
            size = getattr(self, name)
            if size <= 0 or size % 16:
                problems.append(f"{name} must be a positive multiple of 16 (the output stride), got {size}")
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            problems.append(f"steps_per_epoch must be at least 1, got {self.steps_per_epoch}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be positive, got {self.learning_rate}")
        if self.backbone not in BACKBONES:
            problems.append(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.decoder_stride not in DECODER_STRIDES:
            problems.append(f"decoder_stride must be one of {DECODER_STRIDES}, got {self.decoder_stride}")
        if self.decoder not in DECODERS:
            problems.append(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.outputs not in (1, 2):
            problems.append(f"outputs must be 1 (road) or 2 ({' and '.join(TARGETS)}), got {self.outputs}")
        if not self.band_width_m > 0:
            problems.append(f"band_width_m must be positive, got {self.band_width_m}")
        if self.snapshot_every_steps is not None and (
            self.steps_per_epoch is None or self.snapshot_every_steps % self.steps_per_epoch
        ):
            problems.append(
                f"snapshot_every_steps ({self.snapshot_every_steps}) must be a multiple of steps_per_epoch "
                f"({self.steps_per_epoch}): checkpoints are written at the end of an epoch"
            )
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.precision != "auto" and self.precision not in PRECISIONS:
            problems.append(f"precision must be auto or one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("scale_range", "pixel_size_range_m"):
            bounds = getattr(self, name)
            if bounds is not None and not (len(bounds) == 2 and 0 < bounds[0] <= bounds[1]):
                problems.append(f"{name} must be two positive numbers, low <= high, got {bounds}")
        if not 0 <= self.rescale_probability <= 1:
            problems.append(f"rescale_probability must be within [0, 1], got {self.rescale_probability}")
        if self.photometric not in PHOTOMETRIC:
            problems.append(f"photometric must be one of {', '.join(PHOTOMETRIC)}, got {self.photometric!r}")
        for spec in [*self.train_data, *self.val_data]:
            try:
                Source.parse(spec)
            except (InvalidInput, ValueError, TypeError) as exc:
                problems.append(f"bad data source {spec!r}: {exc}")
        if not self.train_data:
            problems.append("no training data: give train_data (folders or TFRecord dataset folders)")
        if problems:
            raise InvalidInput("invalid training config: " + "; ".join(problems))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a YAML or JSON config file (unknown keys are an error, so typos are caught)."""
        path = Path(path)
        if not path.is_file():
            raise MissingFile(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InvalidInput(f"config file {path} is not valid YAML/JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidInput(f"unknown config keys in {path}: {', '.join(unknown)}")
        for name in ("scale_range", "pixel_size_range_m"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)

    def augmentation(self) -> Augmentation:
        """The training-crop recipe these settings describe (a roadseg.trainer.data.Augmentation)."""
        from roadseg.trainer.data import Augmentation

        # tuple(): a config built in code may hold lists; pairs, as validate() checks.
        pixel_range = self.pixel_size_range_m
        return Augmentation(
            crop_size=self.crop_size,
            scale_range=cast("tuple[float, float]", tuple(self.scale_range)),
            pixel_size_range_m=cast("tuple[float, float]", tuple(pixel_range)) if pixel_range else None,
            rescale_probability=self.rescale_probability,
            photometric=self.photometric,
        )

    def to_yaml(self) -> str:
        """The config as YAML (tuples as lists, so the file reads back with TrainConfig.load)."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return yaml.safe_dump(values, sort_keys=False)


def _setup_devices(precision: str) -> tuple[tf.distribute.Strategy, str]:
    """MirroredStrategy on GPUs, the default strategy on CPU; returns (strategy, dtype policy name).

    "auto" precision is mixed_float16 on GPUs (tensor cores) and float32 on CPU, where float16 has no
    fast kernels (measured on this project's 2-core CPU: bfloat16 steps were only ~7 % faster).
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    policy = precision if precision != "auto" else ("mixed_float16" if gpus else "float32")
    if gpus:
        log.info("training on %d GPU(s), dtype policy %s", len(gpus), policy)
        return tf.distribute.MirroredStrategy(), policy
    log.info("no GPU: training on CPU, dtype policy %s", policy)
    return tf.distribute.get_strategy(), policy


class _TensorBoardLog:
    """Per-epoch scalars as TensorBoard event files in ``<output>/tensorboard/`` (local or ``gs://``).

    Events are written to a local staging folder and the file is copied to storage after every epoch,
    so any storage backend works; a resumed run adds a new event file, which TensorBoard merges.
    """

    def __init__(self, storage: Storage, staging: Path) -> None:
        import tensorflow as tf

        self.storage = storage
        self.staging = staging
        self.writer = tf.summary.create_file_writer(str(staging))

    def write(self, epoch: int, row: dict) -> None:
        import tensorflow as tf

        with self.writer.as_default():
            for name, value in row.items():
                if name not in ("epoch", "seconds", "step"):
                    tf.summary.scalar(name, value, step=epoch)
            tf.summary.scalar("epoch_seconds", row["seconds"], step=epoch)
        self.writer.flush()
        for path in self.staging.iterdir():
            self.storage.write_file(f"{TENSORBOARD}/{path.name}", path)


def _score(logs: dict) -> float:
    """The figure that picks ``best.keras``: validation road IoU, or the mean over a model's outputs."""
    names = [f"{target}_iou" for target in TARGETS] if "surface_iou" in logs else ["road_iou"]
    values = [logs.get(f"val_{n}", logs.get(n, 0.0)) for n in names]
    return float(sum(values) / len(values))


def _callbacks(
    config: TrainConfig, storage: Storage, start: float, best_so_far: float, staging: Path
) -> list[keras.callbacks.Callback]:
    import keras

    tensorboard = _TensorBoardLog(storage, staging)

    class StorageCheckpoint(keras.callbacks.Callback):
        """After each epoch: append to log.csv, save last (and best) checkpoint, stop on the time budget."""

        def __init__(self) -> None:
            super().__init__()
            self.best = best_so_far
            self.epoch_start = time.monotonic()

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch_start = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = dict(logs or {})
            lr = self.model.optimizer.learning_rate
            seconds = time.monotonic() - self.epoch_start
            step = int(self.model.optimizer.iterations)
            row = {"epoch": epoch + 1, "step": step, "seconds": round(seconds, 1), "lr": float(lr)}
            row["steps_per_s"] = round(self.params.get("steps", 0) / max(seconds, 1e-9), 4)
            row.update({k: round(float(v), 5) for k, v in logs.items() if k != "learning_rate"})
            old = storage.read_text(LOG) if storage.exists(LOG) else ""
            header = ",".join(row)
            if not old:
                old = header + "\n"
            storage.write_text(LOG, old + ",".join(str(v) for v in row.values()) + "\n")
            tensorboard.write(epoch + 1, row)
            save_to(storage, LAST, self.model)
            if config.snapshot_every_steps and step % config.snapshot_every_steps == 0:
                save_to(storage, snapshot_key(step), self.model)
            score = _score(logs)
            if score >= self.best:
                self.best = float(score)
                save_to(storage, BEST, self.model)
            storage.write_text(STATE, json.dumps({"epoch": epoch + 1, "best_val_road_iou": self.best}))
            log.info("epoch %d done: %s", epoch + 1, row)
            if config.max_minutes:
                elapsed = time.monotonic() - start
                if elapsed + row["seconds"] > config.max_minutes * 60:
                    log.info("time budget of %.1f min reached: stopping after epoch %d", config.max_minutes, epoch + 1)
                    self.model.stop_training = True

    return [StorageCheckpoint()]


def train(config: TrainConfig, resume: bool = False, verbose: int | None = None, command: str | None = None) -> dict:
    """Run (or continue) training; returns the final state (epochs done, best validation road IoU).

    ``command`` (the command line, for the model card) is saved in command.txt in the run folder.
    """
    import keras

    config.validate()
    strategy, policy = _setup_devices(config.precision)
    previous = keras.mixed_precision.global_policy()
    # The global policy is process state: restore it, so a later build (export, evaluation) is float32.
    keras.mixed_precision.set_global_policy(policy)
    try:
        with tempfile.TemporaryDirectory(prefix="roadseg-data-") as cache:
            return _train(config, strategy, Path(cache), resume, verbose, command)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _train(
    config: TrainConfig,
    strategy: tf.distribute.Strategy,
    cache: Path,
    resume: bool,
    verbose: int | None,
    command: str | None,
) -> dict:
    """The run itself; ``cache`` holds local copies of data given as storage URLs."""
    import keras
    import tensorflow as tf

    from roadseg.trainer import data
    from roadseg.trainer.losses import RoadLoss, road_metrics
    from roadseg.trainer.model import build_model
    from roadseg.trainer.narrow import head_indices
    from roadseg.trainer.schedule import WarmupCosine
    from roadseg.trainer.serving_model import load_exported_weights

    start = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    sources = [data.Source.parse(s).localized(cache) for s in config.train_data]
    val_sources = [data.Source.parse(s).localized(cache) for s in config.val_data]
    steps = config.steps_per_epoch or data.steps_for(sources, config.batch_size)
    # Decoded before any model is built, so missing or bad data fails in seconds.
    pools = data.load_pools(sources, "train", config.outputs, config.band_width_m)
    val_ds = None
    if val_sources:
        crop, outputs, band = config.val_crop_size, config.outputs, config.band_width_m
        val_ds = data.validation_dataset(val_sources, crop, config.batch_size, outputs=outputs, band_width_m=band)
    storage = storage_from_url(config.output)  # created only once the data is known to be there

    initial_epoch, best = 0, -1.0
    with strategy.scope():
        if resume and storage.exists(LAST) and storage.exists(STATE):
            state = json.loads(storage.read_text(STATE))
            initial_epoch, best = int(state["epoch"]), float(state.get("best_val_road_iou", -1.0))
            model = load_checkpoint(storage, LAST)
            log.info("resuming after epoch %d (optimizer step %d)", initial_epoch, int(model.optimizer.iterations))
        else:
            if resume:
                log.info("nothing to resume in %s: starting from scratch", config.output)
            model = build_model(
                config.backbone,
                config.weights,
                aspp_filters=config.aspp_filters,
                decoder_filters=config.decoder_filters,
                decoder_stride=config.decoder_stride,
                decoder=config.decoder,
                outputs=config.outputs,
            )
            if config.init_from:
                fresh = load_exported_weights(model, config.init_from, head_indices)
                log.info("starting from the weights of %s", config.init_from)
                if fresh:
                    log.info("%d variables are new to this architecture and start fresh: %s", len(fresh), fresh)
            schedule = WarmupCosine(
                config.learning_rate, int(config.warmup_epochs * steps), config.epochs * steps, config.lr_floor
            )
            model.compile(
                optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
                loss=RoadLoss(config.loss),
                metrics=road_metrics(config.outputs),
            )
    # Batch k of the run is a pure function of (seed, k): a resumed run continues the same sequence.
    train_ds = data.training_dataset(
        sources,
        config.augmentation(),
        config.batch_size,
        seed=config.seed,
        start_step=int(model.optimizer.iterations),
        outputs=config.outputs,
        band_width_m=config.band_width_m,
        pools=pools,
    )
    storage.write_text(CONFIG, config.to_yaml())
    if command:
        # Resumed runs append their command line, so the card shows every command that shaped the model.
        previous = storage.read_text(COMMAND) if initial_epoch and storage.exists(COMMAND) else ""
        storage.write_text(COMMAND, previous + command + "\n")
    if initial_epoch >= config.epochs:
        log.info("already trained %d of %d epochs", initial_epoch, config.epochs)
        return {"epoch": initial_epoch, "best_val_road_iou": best}
    log.info(
        "training %s/%s (%d outputs): %d steps/epoch of %d x %dpx, epochs %d..%d, tf %s",
        config.backbone,
        config.decoder,
        config.outputs,
        steps,
        config.batch_size,
        config.crop_size,
        initial_epoch + 1,
        config.epochs,
        tf.__version__,
    )
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps,
        callbacks=_callbacks(config, storage, start, best, cache / "tensorboard"),
        verbose=verbose if verbose is not None else (1 if sys.stderr.isatty() else 2),
        shuffle=False,  # the tf.data pipeline shuffles
    )
    return json.loads(storage.read_text(STATE))
