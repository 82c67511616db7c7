"""Scene jobs: register a source (validated from its header), then tile it, tracking status.

Shared by the API (register), the Celery tasks (plan, then one task per shard: see
:mod:`roadseg.shards`) and the CLI (all of it in one process, without Redis).

A scene id is derived from the source's content (or URI and size) and the tiling parameters,
so submitting the same scene twice names the same scene: its tiles are found and skipped,
never duplicated.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import rasterio
from rasterio.io import DatasetReader

from roadseg.documents import SceneRecord, Status
from roadseg.errors import InvalidInput, RoadsegError
from roadseg.ingest.tiling import (
    GDAL_CACHE_MB,
    Progress,
    TileParams,
    manifest_key,
    scene_manifest,
    tile_cells,
    tile_grid,
)
from roadseg.jobs import JobStore
from roadseg.mosaic import gcs_gdal_options
from roadseg.raster import Stretch, compute_stretch, open_stored, scene_info, trusted_mosaics
from roadseg.shards import TileJob, tile_plan
from roadseg.storage import Storage, split_url

log = logging.getLogger(__name__)

#: Status records live at ``scenes/{id}/status.json``, next to the tiles and the manifest.
KIND = "scenes"

#: Extensions kept on stored uploads (GDAL identifies formats by content; this is for people).
_KNOWN_SUFFIXES = {".tif", ".tiff", ".jp2", ".j2k", ".png", ".jpg", ".jpeg"}


def scene_store(storage: Storage) -> JobStore[SceneRecord]:
    """The status records of scenes, kept at ``scenes/<id>/status.json`` beside the tiles."""
    return JobStore(storage, KIND, SceneRecord)


def scene_id_for(fingerprint: str, params: TileParams) -> str:
    """Deterministic id: the same source cut the same way is the same scene."""
    text = f"{fingerprint}|{params.tile_size}|{params.overlap}|{params.percentiles[0]}|{params.percentiles[1]}"
    return "s" + hashlib.sha256(text.encode()).hexdigest()[:20]


def scene_id_for_uri(uri: str, size: int, params: TileParams) -> str:
    """Id of a scene read in place from a URI (its content is not hashed: it may be large and remote)."""
    return scene_id_for(f"uri:{uri}:{size}", params)


def upload_key(scene_id: str, filename: str) -> str:
    """Where an uploaded source is stored: inside the scene's folder, under a fixed name."""
    suffix = PurePosixPath(filename).suffix.lower()
    return f"scenes/{scene_id}/source{suffix if suffix in _KNOWN_SUFFIXES else ''}"


def source_of(storage: Storage, record: SceneRecord) -> tuple[Storage, str, str]:
    """(storage, key, reference) of a scene's source: an upload in ``storage`` or an external URI."""
    if record.source_url:
        source, key = split_url(record.source_url)
        return source, key, record.source_url
    if record.source_key is None:
        raise InvalidInput(f"scene {record.id} has neither a source_key nor a source_url")
    return storage, record.source_key, record.source_key


def stretch_of(record: SceneRecord) -> Stretch:
    """The stretch the scene's planner fixed for all its shards."""
    if record.stretch is None:
        raise InvalidInput(f"scene {record.id} has no stretch yet (it was not planned)")
    return Stretch.from_dict(record.stretch)


@contextlib.contextmanager
def open_scene_source(source: Storage, key: str, mosaic: bool = False) -> Iterator[DatasetReader]:
    """A scene's source, checked, with GDAL's block cache capped; ``mosaic``: the VRT this service wrote.

    A VRT names other files for GDAL to open, so it is refused from uploads and URIs; a mosaic the
    ingest API built itself (every tile passed its allow-lists) is opened with VRTs trusted, and with
    GDAL pointed at the storage emulator when one is configured (its tiles may be gs:// objects).
    """
    options = gcs_gdal_options() if mosaic else {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, **options))
        if mosaic:
            stack.enter_context(trusted_mosaics())
        yield stack.enter_context(open_stored(source, key))


def register_scene(
    storage: Storage, scene_id: str, source: Storage, key: str, params: TileParams, **fields: object
) -> SceneRecord:
    """Validate the source from its header and create (or reset) the scene's status record.

    Raises :class:`~roadseg.errors.InvalidInput` / :class:`~roadseg.errors.TooLarge` before
    anything is recorded; the caller deletes a rejected upload.
    """
    with open_scene_source(source, key, fields.get("mosaic_files") is not None) as ds:
        info = scene_info(ds)
    total = len(tile_grid(info.width, info.height, params.tile_size, params.overlap))
    return scene_store(storage).create(
        scene_id,
        **info.model_dump(),
        **fields,
        tile_size=params.tile_size,
        overlap=params.overlap,
        percentiles=list(params.percentiles),
        progress={"done": 0, "total": total},
        tile_count=None,
        skipped_empty=None,
        manifest_key=None,
    )


def params_of(record: SceneRecord) -> TileParams:
    """The tiling parameters recorded at registration, so every run cuts the scene the same way."""
    low, high = record.percentiles
    return TileParams(record.tile_size, record.overlap, (low, high))


def needs_run(record: SceneRecord) -> bool:
    """Whether a re-submitted scene is queued again: only after a failure.

    Queued and running scenes are already on their way (a killed worker's task is re-delivered
    by the broker), and done ones are complete.
    """
    return record.status == Status.FAILED


def run_scene(
    storage: Storage, scene_id: str, echo: Progress | None = None, shard_tiles: int | None = None
) -> dict[str, Any]:
    """Tile a registered scene in this process, shard after shard, exactly as queued workers would.

    Returns the manifest. Bad input is recorded as ``failed`` and re-raised; other errors are left
    to the caller. ``shard_tiles`` (default ``ROADSEG_SHARD_TILES``) only matters for a new plan.
    """
    for index in plan_scene(storage, scene_id, shard_tiles):
        run_shard(storage, scene_id, index, echo)
    return finish_scene(storage, scene_id)


def plan_scene(storage: Storage, scene_id: str, shard_tiles: int | None = None) -> list[int]:
    """Mark the scene running, fix its stretch and its cut into shards; returns the shards still to run.

    The stretch is computed once here (a decimated read of the whole scene), so every shard maps
    the source's values to the same 8-bit colours. A re-delivered planner finds the plan and keeps it.
    """
    jobs = scene_store(storage)
    job = TileJob(jobs, scene_id)
    record = job.start()
    if record.stretch is None or record.shards is None:
        source, key, _ = source_of(storage, record)
        params = params_of(record)
        with job.failing(RoadsegError), open_scene_source(source, key, bool(record.mosaic_files)) as ds:
            stretch = compute_stretch(ds, params.percentiles)
        shards = tile_plan(record.progress.total, shard_tiles)
        record = jobs.update(scene_id, stretch=stretch.to_dict(), shards=shards)
    cut, pending = job.pending(record)
    log.info("scene %s: %d shards of %d tiles, %d to run", scene_id, len(cut), cut[0].size, len(pending))
    return pending


def run_shard(storage: Storage, scene_id: str, index: int, echo: Progress | None = None) -> bool:
    """Cut the tiles of shard ``index`` (skipping stored ones); returns whether all shards have finished.

    A finished shard is not redone. Bad input fails the scene (recorded, re-raised) and the other
    shards then stop at their start instead of doing work nobody will use.
    """
    job = TileJob(scene_store(storage), scene_id)
    shard = job.shard(index, echo)
    if shard.settled is not None:
        return shard.settled
    record, span = shard.record, shard.span
    source, key, _ = source_of(storage, record)
    params = params_of(record)

    with job.failing(RoadsegError), open_scene_source(source, key, bool(record.mosaic_files)) as ds:
        cells = tile_grid(ds.width, ds.height, params.tile_size, params.overlap)[span.start : span.stop]
        stretch = stretch_of(record)
        tiles, skipped = tile_cells(storage, scene_id, ds, cells, stretch, params, shard.progress)
    return shard.finish({"tiles": tiles, "skipped_empty": skipped})


def finish_scene(storage: Storage, scene_id: str) -> dict[str, Any]:
    """Join the shards' tiles (grid order) into the manifest, written last, and mark the scene done."""
    jobs = scene_store(storage)
    record = jobs.get(scene_id)
    results = TileJob(jobs, scene_id).results(record)
    tiles = [tile for result in results for tile in result["tiles"]]
    skipped = sum(result["skipped_empty"] for result in results)
    _, _, reference = source_of(storage, record)
    stretch = stretch_of(record)
    manifest = scene_manifest(scene_id, reference, record, params_of(record), stretch, tiles, skipped)
    storage.write_text(manifest_key(scene_id), json.dumps(manifest, indent=1))
    total = record.progress.total
    jobs.update(
        scene_id,
        status=Status.DONE,
        progress={"done": total, "total": total},
        tile_count=len(tiles),
        skipped_empty=skipped,
        manifest_key=manifest_key(scene_id),
    )
    return manifest
