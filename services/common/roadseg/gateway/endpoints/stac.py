"""STAC: ``/api/v1/predictions/{id}/item.json``, ``/api/v1/scenes/{id}/item.json``, ``/api/v1/stac/catalog.json``.

Items and the scene collection are built by :mod:`roadseg.stac` from the status records. Auth follows the
resource: a prediction's item needs a viewer (as its record does), a scene's item and the collection of all
scenes an operator (as the ingest API's scene records do). Served by the gateway, beside the tiles the
items link to.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from roadseg.auth import Role, require
from roadseg.gateway.deps import PredictionsDep
from roadseg.gateway.endpoints.predictions import public
from roadseg.http_api import StorageDep
from roadseg.stac import prediction_item, scene_item, scenes_collection

predictions_router = APIRouter(prefix="/api/v1/predictions", tags=["stac"], dependencies=[require(Role.viewer)])
scenes_router = APIRouter(prefix="/api/v1/scenes", tags=["stac"], dependencies=[require(Role.operator)])
catalog_router = APIRouter(prefix="/api/v1/stac", tags=["stac"], dependencies=[require(Role.operator)])


class StacItem(BaseModel):
    """A STAC 1.1 Item (GeoJSON Feature): footprint and bbox in lon/lat, ``proj:`` fields, assets, tile links."""

    model_config = ConfigDict(extra="allow")

    type: Literal["Feature"]
    stac_version: str
    stac_extensions: list[str]
    id: str
    geometry: dict[str, Any] = Field(description="Footprint polygon in EPSG:4326.")
    bbox: list[float] = Field(description="[west, south, east, north] in EPSG:4326.")
    properties: dict[str, Any] = Field(description="datetime, proj:code/shape/transform/bbox, roadseg:* facts.")
    assets: dict[str, dict[str, Any]] = Field(description="Files with href, type (media type) and roles.")
    links: list[dict[str, Any]] = Field(description="self, xyz tile templates per layer, derived_from.")


class StacCollection(BaseModel):
    """A static STAC 1.1 Collection linking one item per scene (STAC Browser and QGIS open it)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["Collection"]
    stac_version: str
    id: str
    description: str
    extent: dict[str, Any]
    links: list[dict[str, Any]] = Field(description="self, root and one ``item`` link per georeferenced scene.")


def base_url(request: Request) -> str:
    """This API's address as the client reached it, for absolute hrefs."""
    return str(request.base_url).rstrip("/")


@predictions_router.get("/{job_id}/item.json", response_model=StacItem)
def get_prediction_item(job_id: str, request: Request, jobs: PredictionsDep) -> dict[str, Any]:
    """The STAC item of a finished georeferenced prediction (model version among its properties)."""
    record = public(jobs.get(job_id))
    return prediction_item(record, base_url(request), list(record.links))


@scenes_router.get("/{scene_id}/item.json", response_model=StacItem)
def get_scene_item(scene_id: str, request: Request, storage: StorageDep) -> dict[str, Any]:
    """The STAC item of an ingested, georeferenced scene."""
    from roadseg.ingest.scene_jobs import scene_store

    return scene_item(storage, scene_store(storage).get(scene_id), base_url(request))


@catalog_router.get("/catalog.json", response_model=StacCollection)
def get_catalog(request: Request, storage: StorageDep) -> dict[str, Any]:
    """A collection of every georeferenced ingested scene, one ``item`` link each."""
    from roadseg.ingest.scene_jobs import scene_store

    return scenes_collection(scene_store(storage).list(), base_url(request))
