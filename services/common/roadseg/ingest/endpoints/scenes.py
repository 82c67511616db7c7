"""``/api/v1/scenes``: submit scenes and follow their tiling.

``POST`` takes a multipart upload (field ``file``), a ``uri`` (``gs://`` or ``file://``, as a form
field or JSON), or a multi-file scene: ``uris`` (its tiles) or a folder ``uri`` ending in ``/``, joined
into one VRT mosaic (:mod:`roadseg.mosaic`). It validates the image headers *synchronously* (bad input
gets an immediate 4xx and nothing stays in storage), records the scene and queues the tiling task. ``GET /{id}`` reports
status, progress, tile count, CRS, bounds, pixel size and any error.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from roadseg import uri_policy
from roadseg.auth import Role, require
from roadseg.config import Settings
from roadseg.documents import SceneRecord, Status
from roadseg.errors import InvalidInput, NotFound, TooLarge
from roadseg.http_api import SettingsDep, StorageDep, enqueue
from roadseg.ingest.scene_jobs import (
    needs_run,
    register_scene,
    scene_id_for,
    scene_id_for_uri,
    scene_store,
    upload_key,
)
from roadseg.ingest.tiling import TileParams
from roadseg.mosaic import build_mosaic, expand_sources
from roadseg.storage import Storage, safe_filename

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/scenes", tags=["scenes"], dependencies=[require(Role.operator)])

_HASH_CHUNK = 1024 * 1024


class SceneSource(BaseModel):
    """JSON form of a submission by URI (the multipart form has the same fields plus ``file``)."""

    uri: str | None = Field(default=None, description="The scene, or a folder of its tiles when it ends in '/'.")
    uris: list[str] | None = Field(default=None, description="Or the tiles of one multi-file scene (a mosaic).")
    tile_size: int | None = None
    overlap: int | None = None
    stretch_low: float | None = None
    stretch_high: float | None = None


class SceneAccepted(BaseModel):
    """A submitted scene: its id (the same for the same source cut the same way) and where to follow it."""

    id: str
    status: Status
    url: str = Field(description="Status record of the scene.")


class SceneList(BaseModel):
    """Every scene, newest first."""

    scenes: list[SceneRecord]


@router.post("", status_code=202, response_model=SceneAccepted)
async def submit_scene(
    request: Request,
    settings: SettingsDep,
    storage: StorageDep,
    file: UploadFile | None = File(None, description="The scene image (GeoTIFF, COG, JP2, PNG, JPEG)."),
    uri: str | None = Form(
        None,
        description="Instead of a file: gs://bucket/key or file:///path of the scene; a folder ending in '/' "
        "is a multi-file scene (its .tif/.jp2 tiles as one mosaic).",
    ),
    uris: list[str] | None = Form(None, description="Or the tiles (gs:// or file://) of one multi-file scene."),
    tile_size: int | None = Form(None, description="Tile edge in pixels (default: ROADSEG_TILE_SIZE)."),
    overlap: int | None = Form(None, description="Overlap between tiles in pixels (ROADSEG_TILE_OVERLAP)."),
    stretch_low: float | None = Form(None, description="Low percentile of the stretch for non-8-bit data."),
    stretch_high: float | None = Form(None, description="High percentile of the stretch for non-8-bit data."),
) -> dict[str, Any]:
    """Submit a scene; 202 with its id. The same scene submitted again keeps its id and tiles."""
    if request.headers.get("content-type", "").lower().startswith("application/json"):
        try:
            body = SceneSource.model_validate_json(await request.body())
        except ValidationError as exc:
            raise InvalidInput(f"invalid JSON body: {exc.errors(include_url=False)}") from exc
        uri, uris, tile_size, overlap = body.uri, body.uris, body.tile_size, body.overlap
        stretch_low, stretch_high = body.stretch_low, body.stretch_high
    percentiles = None
    if stretch_low is not None or stretch_high is not None:
        default_low, default_high = settings.stretch_percentiles
        percentiles = (
            default_low if stretch_low is None else stretch_low,
            default_high if stretch_high is None else stretch_high,
        )
    params = TileParams.from_settings(settings, tile_size, overlap, percentiles)
    if sum((file is not None, bool(uri), bool(uris))) != 1:
        raise InvalidInput(
            "send exactly one of: a multipart 'file' upload, a 'uri' (gs:// or file://) or 'uris' (a scene's tiles)"
        )
    if file is not None:
        accepted = await run_in_threadpool(_accept_upload, storage, settings, file.file, file.filename or "", params)
    elif uris or str(uri).endswith("/"):
        accepted = await run_in_threadpool(_accept_mosaic, storage, settings, uris or [str(uri)], params)
    else:
        accepted = await run_in_threadpool(_accept_uri, storage, settings, str(uri), params)
    record, queue = accepted
    if queue:
        await run_in_threadpool(_enqueue, storage, record.id)
    return {"id": record.id, "status": record.status, "url": f"/api/v1/scenes/{record.id}"}


@router.get("", response_model=SceneList)
def list_scenes(storage: StorageDep) -> dict[str, list[SceneRecord]]:
    """Every scene, newest first."""
    return {"scenes": scene_store(storage).list()}


@router.get("/{scene_id}", response_model=SceneRecord)
def get_scene(scene_id: str, storage: StorageDep) -> SceneRecord:
    """Status, progress (tiles done / total), tile count, CRS, bounds, pixel size and error of a scene."""
    return scene_store(storage).get(scene_id)


def _enqueue(storage: Storage, scene_id: str) -> None:
    """Queue the tiling task; without a broker the scene is marked failed (re-submitting queues it again)."""
    from roadseg.ingest.tasks import tile_scene

    enqueue(
        lambda: tile_scene.delay(scene_id),
        "tiling task",
        lambda message: scene_store(storage).update(scene_id, status=Status.FAILED, error=message),
        "ingest",
    )


def _digest(stream: BinaryIO, max_bytes: int) -> tuple[str, int]:
    """SHA-256 and size of a (spooled) upload, refusing oversize and empty ones."""
    sha, size = hashlib.sha256(), 0
    while chunk := stream.read(_HASH_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"upload exceeds the limit of {max_bytes} bytes")
        sha.update(chunk)
    stream.seek(0)
    if size == 0:
        raise InvalidInput("the upload is empty")
    return sha.hexdigest(), size


def _accept_upload(
    storage: Storage, settings: Settings, stream: BinaryIO, filename: str, params: TileParams
) -> tuple[SceneRecord, bool]:
    """Store an upload under its scene, validate it, record it; returns (record, whether to queue)."""
    name = safe_filename(filename, default="scene.tif")
    digest, size = _digest(stream, settings.max_upload_bytes)
    scene_id = scene_id_for(f"sha256:{digest}", params)
    if (existing := _existing(storage, scene_id)) is not None:
        return existing
    key = upload_key(scene_id, name)
    storage.write_stream(key, stream, max_bytes=settings.max_upload_bytes)
    try:
        record = register_scene(storage, scene_id, storage, key, params, source_key=key, filename=name, bytes=size)
    except BaseException:
        storage.delete(key)  # a rejected upload leaves nothing behind
        raise
    log.info("scene %s: upload %s (%d bytes) accepted", scene_id, name, size)
    return record, True


def _accept_uri(storage: Storage, settings: Settings, uri: str, params: TileParams) -> tuple[SceneRecord, bool]:
    """Validate a scene referenced by URI (read in place, never copied); returns (record, whether to queue)."""
    source, key, size = uri_policy.size_of(uri, settings, "scene URI")
    scene_id = scene_id_for_uri(uri, size, params)
    if (existing := _existing(storage, scene_id)) is not None:
        return existing
    record = register_scene(storage, scene_id, source, key, params, source_url=uri, filename=key, bytes=size)
    log.info("scene %s: %s accepted", scene_id, uri)
    return record, True


def _accept_mosaic(
    storage: Storage, settings: Settings, uris: list[str], params: TileParams
) -> tuple[SceneRecord, bool]:
    """Join the tiles of a multi-file scene into a VRT kept with the scene; returns (record, whether to queue).

    Every tile (folders listed first) must pass the same allow-lists as a single scene URI; the VRT is
    written by this service under ``scenes/<id>/source.vrt``, which no upload can name, so the workers
    may open it (:func:`roadseg.ingest.scene_jobs.open_scene_source`). The id hashes the VRT: the same tiles
    give the same scene.
    """
    for uri in uris:
        uri_policy.check_uri(uri, settings, "scene URI")
    tiles = expand_sources(uris)
    for tile in tiles:  # a local folder lists plain paths
        uri_policy.check_uri(tile if "://" in tile else Path(tile).as_uri(), settings, "tile")
    built = build_mosaic(tiles)
    scene_id = scene_id_for("mosaic:" + hashlib.sha256(built.xml.encode()).hexdigest(), params)
    if (existing := _existing(storage, scene_id)) is not None:
        return existing
    key = f"scenes/{scene_id}/source.vrt"
    storage.write_text(key, built.xml)
    try:
        record = register_scene(
            storage, scene_id, storage, key, params, source_key=key, filename=key, mosaic_files=len(built.files)
        )
    except BaseException:
        storage.delete(key)
        raise
    log.info("scene %s: mosaic of %d files (%d x %d px)", scene_id, len(built.files), built.width, built.height)
    return record, True


def _existing(storage: Storage, scene_id: str) -> tuple[SceneRecord, bool] | None:
    """(record, whether to queue) of an already submitted scene; a failed one is queued again."""
    jobs = scene_store(storage)
    try:
        record = jobs.get(scene_id)
    except NotFound:
        return None
    if needs_run(record):
        return jobs.update(scene_id, status=Status.QUEUED, error=None), True
    return record, False
