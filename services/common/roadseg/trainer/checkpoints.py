"""A training run folder: what each file is, and saving/loading its Keras checkpoints.

Shared by the training loop (:mod:`roadseg.trainer.train`), which writes the folder, and the export
(:mod:`roadseg.trainer.export`), which reads a checkpoint and the run's config and command from it.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from roadseg.errors import InvalidInput, MissingFile
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
_SNAPSHOT = re.compile(r"step-(\d+)\.keras$")


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


def snapshots(storage: Storage, folder: str = "checkpoints") -> dict[int, str]:
    """A run's kept checkpoints by step (``checkpoints/step-NNNNNN.keras``), in order.

    ``storage`` is the run folder, or with ``folder=""`` its ``checkpoints/`` itself.
    """
    found = {}
    for key in storage.list(folder):
        match = _SNAPSHOT.search(key)
        if match:
            found[int(match.group(1))] = key
    return dict(sorted(found.items()))


def snapshot_step(key: str) -> int:
    """The step of a kept checkpoint's key or path (``…/step-NNNNNN.keras``)."""
    match = _SNAPSHOT.search(key)
    if not match:
        raise InvalidInput(f"{key} is not a kept checkpoint (checkpoints/step-NNNNNN.keras) of a run")
    return int(match.group(1))


def window_of(kept: dict[int, str], step: int, count: int) -> list[str]:
    """The keys of the ``count`` kept checkpoints ending at ``step`` (oldest first), for :func:`load_average`."""
    steps = [s for s in kept if s <= step][-count:]
    if step not in kept or len(steps) < count:
        raise MissingFile(f"averaging {count} kept checkpoints up to step {step} needs them; the run has {list(kept)}")
    return [kept[s] for s in steps]


def load_average(storage: Storage, keys: Sequence[str]) -> keras.Model:
    """One model whose weights are the mean of the checkpoints' (batch-norm statistics included).

    Checkpoints a few thousand steps apart along one run lie in one basin of the loss; their mean lies
    nearer its centre than any of them, which generalises better than the last point the noisy,
    still-large learning rate reached (stochastic weight averaging, Izmailov et al. 2018). Measured on
    val in docs/training-log.md. Non-float weights (counters) are the last checkpoint's.
    """
    import numpy as np

    if len(keys) == 1:
        return load_checkpoint(storage, keys[0], compile=False)
    models = [load_checkpoint(storage, key, compile=False) for key in keys]
    last = models[-1]
    for i, weight in enumerate(last.weights):
        if np.issubdtype(np.dtype(weight.dtype), np.floating):
            weight.assign(np.mean([model.weights[i].numpy() for model in models], axis=0))
    return last
