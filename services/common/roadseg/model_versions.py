"""The folder of model versions that TF Serving, the gateway and the trainer share, and the model card.

``<model_dir>/<version>/`` holds one exported SavedModel (see :mod:`roadseg.trainer.export`) with
``model_card.json`` beside it. This module only *reads* that layout, so the gateway and ``roadseg
evaluate`` use it without importing the trainer's export code (and without TensorFlow, except
:func:`load_exported_weights`).
"""

from __future__ import annotations

import json
from pathlib import Path

from roadseg.errors import InvalidInput, MissingFile

CARD = "model_card.json"


def is_url(path: str | Path) -> bool:
    """True for storage URLs (gs://, file://), False for local paths."""
    return "://" in str(path)


def latest_version(model_dir: str | Path) -> int | None:
    """Highest integer version folder holding a ``saved_model.pb`` (local folder or storage URL), or None."""
    if is_url(model_dir):
        from roadseg.storage import storage_from_url

        keys = storage_from_url(str(model_dir)).list("")
        versions = [int(k.split("/")[0]) for k in keys if k.split("/")[0].isdigit() and k.endswith("/saved_model.pb")]
        return max(versions, default=None)
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return None
    versions = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    return max(versions, default=None)


def resolve_savedmodel(path: str | Path) -> Path:
    """A SavedModel folder itself, or the latest version inside a folder of versions."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    version = latest_version(path)
    if version is None:
        raise MissingFile(f"no SavedModel in {path} (expected saved_model.pb or numbered versions)")
    return path / str(version)


def load_exported_weights(keras_model, savedmodel: str | Path) -> None:
    """Copy an exported version's weights into a freshly built model of the same architecture.

    The export tracks ``model_variables`` in the Keras model's variable order, so a SavedModel is
    all that is needed to fine-tune a served model: no separate Keras checkpoint ships with it.
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(str(resolve_savedmodel(savedmodel)))
    source = list(getattr(loaded, "model_variables", []))
    target = keras_model.variables
    shapes_differ = any(tuple(a.shape) != tuple(b.shape) for a, b in zip(source, target, strict=False))
    if len(source) != len(target) or shapes_differ:
        raise InvalidInput(
            f"{savedmodel} does not match this architecture ({len(source)} vs {len(target)} variables): "
            "use the backbone and filter sizes of its model card"
        )
    for variable, value in zip(target, source, strict=True):
        variable.assign(value)


def read_card(savedmodel: str | Path) -> dict:
    """The model card beside a SavedModel, local or at a storage URL (``gs://``); {} when absent."""
    if is_url(savedmodel):
        from roadseg.storage import storage_from_url

        storage = storage_from_url(str(savedmodel))
        return json.loads(storage.read_text(CARD)) if storage.exists(CARD) else {}
    path = Path(savedmodel) / CARD
    return json.loads(path.read_text()) if path.is_file() else {}
