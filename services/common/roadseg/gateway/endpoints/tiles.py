"""Map data: XYZ tiles of predictions and scenes, and a prediction's road network in lon/lat.

Routes: ``/api/v1/predictions/{id}/tiles/{layer}/{z}/{x}/{y}.png``, ``/api/v1/scenes/{id}/tiles/image/...``
and ``/api/v1/predictions/{id}/roads.geojson`` (EPSG:4326, RFC 7946).

XYZ tiles in Web Mercator (256 px PNG, transparent where there is no data) drawn from the stored COGs by
:mod:`roadseg.gateway.tile_render`. Each route has the auth of its resource: a prediction's tiles need what its
record needs (viewer), a scene's what the ingest API asks to see the scene (operator). The gateway serves
scene tiles too, not ingest: the map page is the gateway's, the scenes are in the storage it shares, and
it already opens them to predict them in place.

Tiles are ``private`` (behind auth) with ``max-age`` ``ROADSEG_TILE_MAX_AGE_S`` and an ETag; a request
whose ``If-None-Match`` names the current ETag gets 304 before any raster is opened.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from shapely.geometry import mapping, shape

from roadseg.auth import Role, require
from roadseg.config import Settings
from roadseg.errors import InvalidInput, NotFound
from roadseg.gateway.deps import PredictionsDep
from roadseg.gateway.road_network import road_network
from roadseg.gateway.tile_render import PREDICTION_LAYERS, TileSource, prediction_source, render_tile, scene_source
from roadseg.geo import transform_geometry
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
    from roadseg.ingest.scene_jobs import scene_store

    return tile_response(scene_source(storage, scene_store(storage).get(scene_id)), z, x, y, if_none_match, settings)


class RoadNetwork(BaseModel):
    """The road network as RFC 7946 GeoJSON: LineStrings in lon/lat (EPSG:4326), lengths in metres."""

    model_config = ConfigDict(extra="allow")

    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]] = Field(description="One LineString per road segment, with length_m.")


@predictions_router.get("/{job_id}/roads.geojson", response_model=RoadNetwork)
def prediction_roads_lonlat(job_id: str, storage: StorageDep, settings: SettingsDep) -> dict[str, Any]:
    """The road network of a georeferenced prediction in EPSG:4326, for maps (built now if it is not yet).

    ``files/roads.geojson`` keeps the raster's own CRS (and pixel coordinates for plain images).
    """
    key, record = road_network(job_id, storage, settings)
    if not record.info.georeferenced:
        raise InvalidInput(f"prediction {job_id} is of a plain image: its road network is in pixels")
    return roads_in_lonlat(json.loads(storage.read_text(key)))


def roads_in_lonlat(collection: dict[str, Any]) -> dict[str, Any]:
    """A road network GeoJSON of ours reprojected to lon/lat, without the legacy ``crs`` member."""
    crs = (collection.get("roadseg") or {}).get("crs") or "EPSG:4326"
    features = []
    for feature in collection["features"]:
        geometry = transform_geometry(shape(feature["geometry"]), crs, "EPSG:4326")
        features.append({**feature, "geometry": mapping(geometry)})
    return {"type": "FeatureCollection", "features": features}
