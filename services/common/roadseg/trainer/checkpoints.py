"""A training run folder: what each file is, and saving/loading its Keras checkpoints.

Shared by the training loop (:mod:`roadseg.trainer.train`), which writes the folder, and the export
(:mod:`roadseg.trainer.export`), which reads a checkpoint and the run's config and command from it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from roadseg.storage import Storage

if TYPE_CHECKING:
    import keras

LAST = "checkpoints/last.keras"
BEST = "checkpoints/best.keras"
STATE = "state.json"
LOG = "log.csv"
CONFIG = "config.yaml"
COMMAND = "command.txt"
TENSORBOARD = "tensorboard"


def snapshot_key(step: int) -> str:
    """Where the copy of the checkpoint after ``step`` optimizer steps is kept (``snapshot_every_steps``)."""
    return f"checkpoints/step-{step:06d}.keras"


def save_to(storage: Storage, key: str, model: keras.Model) -> None:
    """Save a Keras model to ``key`` in storage (written locally, then copied atomically)."""
    with tempfile.TemporaryDirectory(prefix="roadseg-ckpt-") as tmp:
        path = Path(tmp) / Path(key).name
        model.save(path)
        storage.write_file(key, path)


def load_checkpoint(storage: Storage, key: str, compile: bool = True) -> keras.Model:
    """A Keras model from a ``.keras`` file in storage; compiled (with optimizer state) unless told not to.

    The optimizer state only restores under the dtype policy the run trained with (a mixed_float16
    run's optimizer is wrapped in a LossScaleOptimizer): ``train`` sets it before resuming.
    """
    import keras

    import roadseg.trainer.losses  # noqa: F401  (registers the custom objects)
    import roadseg.trainer.model  # noqa: F401
    import roadseg.trainer.schedule  # noqa: F401

    with storage.local_path(key) as path:
        return keras.models.load_model(path, compile=compile)
