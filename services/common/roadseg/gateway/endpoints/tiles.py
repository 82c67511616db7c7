"""Map tiles: ``/api/v1/predictions/{id}/tiles/{layer}/{z}/{x}/{y}.png`` and ``/api/v1/scenes/{id}/tiles/image/...``.

XYZ tiles in Web Mercator (256 px PNG, transparent where there is no data) drawn from the stored COGs by
:mod:`roadseg.gateway.tiles`. Each route has the auth of its resource: a prediction's tiles need what its
record needs (viewer), a scene's what the ingest API asks to see the scene (operator). The gateway serves
scene tiles too, not ingest: the map page is the gateway's, the scenes are in the storage it shares, and
it already opens them to predict them in place.

Tiles are ``private`` (behind auth) with ``max-age`` ``ROADSEG_TILE_MAX_AGE_S`` and an ETag; a request
whose ``If-None-Match`` names the current ETag gets 304 before any raster is opened.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Response

from roadseg.auth import Role, require
from roadseg.config import Settings
from roadseg.errors import NotFound
from roadseg.gateway.deps import PredictionsDep
from roadseg.gateway.tiles import PREDICTION_LAYERS, TileSource, prediction_source, render_tile, scene_source
from roadseg.http_api import SettingsDep, StorageDep

predictions_router = APIRouter(prefix="/api/v1/predictions", tags=["map"], dependencies=[require(Role.viewer)])
scenes_router = APIRouter(prefix="/api/v1/scenes", tags=["map"], dependencies=[require(Role.operator)])

#: Highest zoom served (about 2 cm pixels at the equator: far past any aerial image's own).
MAX_ZOOM = 24
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "A 256 px RGBA PNG tile."},
    304: {"description": "Not modified: the If-None-Match ETag is the tile's."},
}
Z = Annotated[int, Path(ge=0, le=MAX_ZOOM, description="Zoom level (Web Mercator XYZ).")]
X = Annotated[int, Path(ge=0, description="Tile column from the antimeridian.")]
Y = Annotated[int, Path(ge=0, description="Tile row from the north (XYZ, not TMS).")]
IfNoneMatch = Annotated[str | None, Header(description="ETag(s) the client holds.")]


def tile_response(
    source: TileSource, z: int, x: int, y: int, if_none_match: str | None, settings: Settings
) -> Response:
    """The tile's PNG, or 304 when the client's ETag is current (checked before the raster is read)."""
    if x >= 2**z or y >= 2**z:
        raise NotFound(f"no tile {z}/{x}/{y}: x and y go up to {2**z - 1} at zoom {z}")
    etag = source.etag(z, x, y)
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={settings.tile_max_age_s}"}
    if if_none_match and (if_none_match.strip() == "*" or etag in [t.strip() for t in if_none_match.split(",")]):
        return Response(status_code=304, headers=headers)
    return Response(render_tile(source, z, x, y), media_type="image/png", headers=headers)


@predictions_router.get("/{job_id}/tiles/{layer}/{z}/{x}/{y}.png", response_class=Response, responses=PNG_RESPONSE)
def prediction_tile(
    job_id: str,
    layer: Annotated[str, Path(description=f"One of {', '.join(PREDICTION_LAYERS)}.")],
    z: Z,
    x: X,
    y: Y,
    jobs: PredictionsDep,
    storage: StorageDep,
    settings: SettingsDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """A map tile of a finished georeferenced prediction.

    Layers: ``image`` (the input), ``surface`` (road-surface mask; ``mask`` is the same), ``centerline``
    (the centreline mask of a two-output model, else the surface mask), ``probability`` (inferno colours).
    """
    return tile_response(prediction_source(storage, jobs.get(job_id), layer), z, x, y, if_none_match, settings)


@scenes_router.get("/{scene_id}/tiles/image/{z}/{x}/{y}.png", response_class=Response, responses=PNG_RESPONSE)
def scene_tile(
    scene_id: str,
    z: Z,
    x: X,
    y: Y,
    storage: StorageDep,
    settings: SettingsDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """A map tile of an ingested scene's source (a VRT mosaic for a multi-file scene), with its stretch."""
    from roadseg.ingest.scenes import scene_store

    return tile_response(scene_source(storage, scene_store(storage).get(scene_id)), z, x, y, if_none_match, settings)
