"""Training datasets in the one format the trainer reads (docs/contracts.md §3: TFRecord shards + manifest).

Two sources feed it:

* label runs: every tile's image and mask, minus the tiles a reviewer rejected and the tiles the
  automatic checks flagged that nobody accepted (``include_flagged`` keeps those), split by
  spatial blocks (:mod:`roadseg.labeler.split`);
* plain image/mask folders (``{train,val,test}/{images,masks}`` or ``images/`` + ``masks/``, same
  stems), e.g. Massachusetts Roads crops and CIL-2022: their own split folders are kept; a folder
  without them is split per image with the same seeded rule.

Shards are written to a local temp file and stored with one atomic write each; the manifest is
written last, so a dataset folder with a manifest is complete.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadseg.documents import DatasetManifest
from roadseg.errors import InvalidInput
from roadseg.labeler import split as splitting
from roadseg.labeler.decisions import get_decisions
from roadseg.labeler.run import read_manifest
from roadseg.storage import Storage, storage_from_url
from roadseg.tfrecords import SOURCE_FILE, SPLITS, encode_example, shard_name

log = logging.getLogger(__name__)

FORMAT = "roadseg-tfrecord/1"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
Progress = Callable[[int, int], None]


@dataclass
class Sample:
    """One (image, mask) pair to export; ``load`` reads the pixels only when its shard is written."""

    tile_id: str
    split: str | None
    load: Callable[[], tuple[np.ndarray, np.ndarray]]
    bounds: Sequence[float]
    crs: str | None
    source: str
    #: The centreline band mask, for samples of label runs that wrote one (``labels/<run>/bands/``).
    load_band: Callable[[], np.ndarray] | None = None


# ---------------------------------------------------------------- selection
def keep_tile(entry: dict, decision: str | None, include_flagged: bool) -> str | None:
    """None when the tile goes into the dataset, else the reason it is left out."""
    if decision == "reject":
        return "rejected"
    if decision == "accept" or not entry["flags"] or include_flagged:
        return None
    return "flagged"


# ---------------------------------------------------------------- label runs
def samples_from_runs(
    storage: Storage,
    run_ids: Iterable[str],
    block_tiles: int = 4,
    fractions: Sequence[float] = splitting.DEFAULT_FRACTIONS,
    seed: int = 0,
    include_flagged: bool = False,
) -> tuple[list[Sample], dict]:
    """Samples of the kept tiles of label runs, with their spatial-block split; plus excluded counts."""
    kept: list[tuple[dict, dict, Storage]] = []
    excluded: Counter = Counter()
    overlap = 0
    for run_id in run_ids:
        manifest = read_manifest(storage, run_id)
        scene_storage = storage_from_url(manifest["scene_storage"]) if manifest.get("scene_storage") else storage
        overlap = max(overlap, int(manifest.get("overlap") or 0))
        review = get_decisions(storage, run_id)
        for entry in manifest["tiles"]:
            reason = keep_tile(entry, review.get(entry["id"]), include_flagged)
            if reason:
                excluded[reason] += 1
            else:
                kept.append((manifest, entry, scene_storage))
    splits = splitting.split_grid_tiles(
        [(m["scene_id"], e["id"]) for m, e, _ in kept], block_tiles, fractions, seed, overlap
    )
    samples = []
    for manifest, entry, scene_storage in kept:
        split = splits[(manifest["scene_id"], entry["id"])]
        if split is None:
            excluded["overlap_guard"] += 1
            continue
        samples.append(
            Sample(
                tile_id=f"{manifest['scene_id']}/{entry['id']}",
                split=split,
                load=_run_loader(storage, scene_storage, entry),
                bounds=entry["bounds"],
                crs=manifest["crs"],
                source=f"labels/{manifest['run_id']}",
                load_band=_band_loader(storage, entry["band_key"]) if entry.get("band_key") else None,
            )
        )
    return samples, dict(excluded)


def _run_loader(storage: Storage, scene_storage: Storage, entry: dict) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def load() -> tuple[np.ndarray, np.ndarray]:
        with scene_storage.open_raster(entry["tile_key"]) as ds:
            image = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
        with storage.open_raster(entry["mask_key"]) as ds:
            mask = ds.read(1)
        return image, mask

    return load


def _band_loader(storage: Storage, key: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        with storage.open_raster(key) as ds:
            return ds.read(1)

    return load


# ---------------------------------------------------------------- plain folders
def samples_from_folder(
    root: str | Path, fractions: Sequence[float] = splitting.DEFAULT_FRACTIONS, seed: int = 0
) -> tuple[list[Sample], dict]:
    """Samples of an image/mask folder; split folders (train/val/test) are kept as they are."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidInput(f"not a folder: {root}")
    split_dirs = [(s, root / s) for s in SPLITS if (root / s / "images").is_dir()]
    if split_dirs:
        pairs = [(split, p) for split, folder in split_dirs for p in _pairs(folder)]
    elif (root / "images").is_dir():
        found = _pairs(root)
        groups = splitting.assign_groups({p[0].stem: 1 for p in found}, fractions, seed)
        pairs = [(groups[p[0].stem], p) for p in found]
    else:
        raise InvalidInput(f"{root} has neither images/ + masks/ nor train|val|test/images/ folders")
    if not pairs:
        raise InvalidInput(f"no image/mask pairs found under {root}")
    name = root.name
    samples = [
        Sample(
            tile_id=f"{name}/{split}/{image.stem}",
            split=split,
            load=_folder_loader(image, mask),
            bounds=[0.0, 0.0, 0.0, 0.0],  # filled with the pixel size when loaded (see write_dataset)
            crs=None,
            source=f"folder:{name}",
        )
        for split, (image, mask) in pairs
    ]
    return samples, {}


def _pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(image, mask) paths with the same stem; images without a mask are reported and skipped."""
    masks = {p.stem: p for p in (folder / "masks").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs, missing = [], 0
    for image in sorted((folder / "images").iterdir()):
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if image.stem in masks:
            pairs.append((image, masks[image.stem]))
        else:
            missing += 1
    if missing:
        log.warning("%s: %d images have no mask with the same name; skipped", folder, missing)
    return pairs


def _folder_loader(image_path: Path, mask_path: Path) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def load() -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        with Image.open(image_path) as im:
            image = np.asarray(im.convert("RGB"))
        with Image.open(mask_path) as im:
            mask = np.asarray(im.convert("L"))
        if mask.shape != image.shape[:2]:
            raise InvalidInput(f"mask {mask_path.name} is {mask.shape} but image {image_path.name} is {image.shape}")
        return image, mask

    return load


# ---------------------------------------------------------------- writing
def write_dataset(
    samples: Sequence[Sample],
    out: str,
    shard_size: int = 256,
    info: dict | None = None,
    progress: Progress | None = None,
) -> dict:
    """Write the samples as ``{split}-{i:05d}-of-{n:05d}.tfrecord`` shards plus ``manifest.json`` under ``out``.

    Samples of label runs carry both road definitions (surface in ``mask/png``, centreline band in
    ``band/png``); such a dataset also gets ``source.json`` saying so, which the trainer reads.

    ``out`` is a folder path or storage URL (``gs://bucket/datasets/x``). Returns the manifest.
    """
    import tensorflow as tf

    if shard_size < 1:
        raise InvalidInput("shard size must be at least 1")
    if not samples:
        raise InvalidInput("nothing to export: every tile was excluded (see the review page) or none exist")
    target = storage_from_url(out)
    by_split = {s: [x for x in samples if x.split == s] for s in SPLITS}
    manifest_splits, examples, done = {}, [], 0
    with tempfile.TemporaryDirectory(prefix="roadseg-dataset-") as tmp:
        for split, items in by_split.items():
            n = math.ceil(len(items) / shard_size)
            shards, road, valid = [], 0, 0
            for index in range(n):
                name = shard_name(split, index, n)
                local = Path(tmp) / name
                with tf.io.TFRecordWriter(str(local)) as writer:
                    for sample in items[index * shard_size : (index + 1) * shard_size]:
                        image, mask = sample.load()
                        band = sample.load_band() if sample.load_band else None
                        bounds = sample.bounds if sample.crs else [0.0, 0.0, float(mask.shape[1]), float(mask.shape[0])]
                        writer.write(encode_example(image, mask, sample.tile_id, bounds, sample.crs, band))
                        road += int((mask == 255).sum())
                        valid += int(((mask == 0) | (mask == 255)).sum())
                        examples.append(
                            {"tile_id": sample.tile_id, "split": split, "shard": name, "source": sample.source}
                        )
                        done += 1
                        if progress:
                            progress(done, len(samples))
                target.write_file(name, local)
                local.unlink()
                shards.append(name)
            manifest_splits[split] = {
                "examples": len(items),
                "shards": shards,
                "road_fraction": round(road / valid, 5) if valid else None,
            }
    with_bands = all(s.load_band for s in samples)
    manifest = {
        "format": FORMAT,
        "created": time.time(),
        "features": {
            "image/png": "bytes",
            "mask/png": "bytes",
            **({"band/png": "bytes"} if with_bands else {}),
            "tile_id": "bytes",
            "bounds": "4 floats",
            "crs": "bytes",
        },
        "mask_values": "0 background, 255 road, anything else ignored",
        "splits": manifest_splits,
        "sources": sorted({s.source for s in samples}),
        **(info or {}),
        "examples": examples,
    }
    manifest = DatasetManifest.model_validate(manifest).dump()
    if with_bands:
        # The trainer's source declaration: mask/png is the road surface, band/png the centreline band.
        target.write_text(SOURCE_FILE, json.dumps({"targets": "both"}) + "\n")
    target.write_text("manifest.json", json.dumps(manifest, indent=1))
    log.info(
        "dataset written to %s: %s", target.url, ", ".join(f"{s} {v['examples']}" for s, v in manifest_splits.items())
    )
    return manifest
