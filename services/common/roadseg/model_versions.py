"""The folder of model versions that TF Serving, the gateway and the trainer share, and the model card.

``<model_dir>/<version>/`` holds one exported SavedModel (see :mod:`roadseg.trainer.export`) with
``model_card.json`` beside it. This module only *reads* that layout, so the gateway and ``roadseg
evaluate`` use it without importing the trainer's export code, and without TensorFlow (the trainer
loads an export's weights into a Keras model: :func:`roadseg.trainer.serving_model.load_exported_weights`).
"""

from __future__ import annotations

from pathlib import Path

from roadseg.documents import ModelCard
from roadseg.errors import InvalidInput, MissingFile

CARD = "model_card.json"
#: The signature that applies the card's own test-time augmentation (``tta``); TF Serving's default.
DEFAULT_SIGNATURE = "serving_default"
#: Test-time augmentations every export also offers as signatures ``tta_<name>`` (per-request choice).
TTA_OPTIONS = ("none", "flip")
#: Test-time augmentation: the views averaged per image, as (quarter turns, mirrored left-right);
#: their number is the cost in model passes. "d4" is all 8 symmetries of the square. Kept here, not in
#: :mod:`roadseg.trainer.export`, so ``roadseg export --tta``'s choices need no TensorFlow to list.
TTA_VIEWS: dict[str, list[tuple[int, bool]]] = {
    "none": [(0, False)],
    "flip": [(0, False), (0, True)],
    "d4": [(turns, mirror) for mirror in (False, True) for turns in range(4)],
}


def signature_for(tta: str | None, card: dict) -> str:
    """The signature that runs test-time augmentation ``tta`` (None: the card's own) on this model version.

    Versions exported before per-request TTA have only their card's ``tta``; asking them for another
    raises :class:`InvalidInput` naming what the version offers.
    """
    own = card.get("tta") or "none"
    if tta is None or tta == own:
        return DEFAULT_SIGNATURE
    offered = card.get("tta_options") or [own]
    if tta not in offered:
        name = f"{card.get('name') or 'the model'} v{card.get('version') or '?'}"
        raise InvalidInput(f"{name} offers test-time augmentation {', '.join(offered)}; got {tta!r}")
    return f"tta_{tta}"


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


def read_card(savedmodel: str | Path) -> dict:
    """The model card beside a SavedModel, local or at a storage URL (``gs://``); {} when absent.

    Read through :class:`~roadseg.documents.ModelCard`: cards of any earlier export still read.
    """
    if is_url(savedmodel):
        from roadseg.storage import storage_from_url

        storage = storage_from_url(str(savedmodel))
        text = storage.read_text(CARD) if storage.exists(CARD) else None
    else:
        path = Path(savedmodel) / CARD
        text = path.read_text() if path.is_file() else None
    return {} if text is None else ModelCard.parse(text, f"{savedmodel}/{CARD}").dump()


def seed_model_dir(model_dir: str | Path, shipped_dir: str | Path) -> list[int]:
    """Copy the shipped versions into a local model folder that holds none yet; returns the versions copied.

    The runtime folder (``ROADSEG_MODEL_DIR``, ``var/models/roads`` by default) is where exports go, so
    the shipped versions in the checkout are never written by a command. A folder that already holds a
    version is somebody's own (or was seeded before) and is left as it is, so a shipped version never
    outranks the versions a user keeps there. Files are hard-linked where
    the file system allows (a shipped version is never changed in place: exports only add versions),
    else copied; each version appears whole (built beside it, then renamed). Storage URLs and a folder
    that is the shipped one are left alone.
    """
    import os
    import shutil
    import tempfile

    if is_url(model_dir) or is_url(shipped_dir):
        return []
    model_dir, shipped_dir = Path(model_dir), Path(shipped_dir)
    if not shipped_dir.is_dir() or model_dir.resolve() == shipped_dir.resolve():
        return []
    if model_dir.is_dir() and latest_version(model_dir) is not None:
        return []
    model_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for version in sorted(p for p in shipped_dir.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()):
        if (model_dir / version.name).exists():
            continue
        with tempfile.TemporaryDirectory(prefix=f".seed-{version.name}-", dir=model_dir) as tmp:

            def link_or_copy(src: str, dst: str) -> None:
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)

            staged = Path(tmp) / version.name
            shutil.copytree(version, staged, copy_function=link_or_copy)
            staged.rename(model_dir / version.name)
        copied.append(int(version.name))
    return copied
