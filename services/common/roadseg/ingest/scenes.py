"""Scene jobs: register a source (validated from its header), then tile it, tracking status.

Shared by the API (register), the Celery task (run) and the CLI (both, without Redis).

A scene id is derived from the source's content (or URI and size) and the tiling parameters,
so submitting the same scene twice names the same scene: its tiles are found and skipped,
never duplicated.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import PurePosixPath
from typing import Any

from roadseg.documents import SceneRecord
from roadseg.errors import RoadsegError
from roadseg.ingest.tiling import Progress, TileParams, manifest_key, tile_grid, tile_scene
from roadseg.jobs import DONE, FAILED, RUNNING, JobStore
from roadseg.raster import open_stored, scene_info
from roadseg.storage import Storage, split_url

#: Status records live at ``scenes/{id}/status.json``, next to the tiles and the manifest.
KIND = "scenes"

#: Seconds between progress writes to the status record (each is one object write).
PROGRESS_INTERVAL_S = 0.5

#: Extensions kept on stored uploads (GDAL identifies formats by content; this is for people).
_KNOWN_SUFFIXES = {".tif", ".tiff", ".jp2", ".j2k", ".png", ".jpg", ".jpeg"}


def scene_store(storage: Storage) -> JobStore:
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


def source_of(storage: Storage, record: dict[str, Any]) -> tuple[Storage, str, str]:
    """(storage, key, reference) of a scene's source: an upload in ``storage`` or an external URI."""
    if record.get("source_url"):
        source, key = split_url(record["source_url"])
        return source, key, record["source_url"]
    return storage, record["source_key"], record["source_key"]


def register_scene(
    storage: Storage, scene_id: str, source: Storage, key: str, params: TileParams, **fields: Any
) -> dict[str, Any]:
    """Validate the source from its header and create (or reset) the scene's status record.

    Raises :class:`~roadseg.errors.InvalidInput` / :class:`~roadseg.errors.TooLarge` before
    anything is recorded; the caller deletes a rejected upload.
    """
    with open_stored(source, key) as ds:
        info = scene_info(ds)
    total = len(tile_grid(info["width"], info["height"], params.tile_size, params.overlap))
    return scene_store(storage).create(
        scene_id,
        **info,
        **fields,
        tile_size=params.tile_size,
        overlap=params.overlap,
        percentiles=list(params.percentiles),
        progress={"done": 0, "total": total},
        tile_count=None,
        skipped_empty=None,
        manifest_key=None,
    )


def params_of(record: dict[str, Any]) -> TileParams:
    """The tiling parameters recorded at registration, so every run cuts the scene the same way."""
    return TileParams(record["tile_size"], record["overlap"], tuple(record["percentiles"]))


def needs_run(record: dict[str, Any]) -> bool:
    """Whether a re-submitted scene is queued again: only after a failure.

    Queued and running scenes are already on their way (a killed worker's task is re-delivered
    by the broker), and done ones are complete.
    """
    return record["status"] == FAILED


def run_scene(storage: Storage, scene_id: str, echo: Progress | None = None) -> dict[str, Any]:
    """Tile a registered scene, writing progress (throttled) and the outcome into its record.

    Bad input is recorded as ``failed`` and re-raised; other errors are left to the caller
    (the Celery task retries transient ones and records the final failure).
    """
    jobs = scene_store(storage)
    record = jobs.update(scene_id, status=RUNNING, error=None)
    source, key, reference = source_of(storage, record)
    last_write = 0.0

    def on_progress(done: int, total: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write >= PROGRESS_INTERVAL_S or done == total:
            jobs.update(scene_id, progress={"done": done, "total": total})
            last_write = now
        if echo:
            echo(done, total)

    try:
        manifest = tile_scene(storage, scene_id, source, key, params_of(record), on_progress, source_ref=reference)
    except RoadsegError as exc:
        jobs.update(scene_id, status=FAILED, error=str(exc))
        raise
    jobs.update(
        scene_id,
        status=DONE,
        tile_count=len(manifest["tiles"]),
        skipped_empty=manifest["skipped_empty"],
        manifest_key=manifest_key(scene_id),
    )
    return manifest
