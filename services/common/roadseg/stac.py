"""STAC descriptions of ingested scenes and georeferenced predictions (pystac), and a collection of all scenes.

GIS tools (STAC Browser, QGIS's STAC source) find rasters through STAC: an Item says where a raster lies
(footprint in lon/lat, bbox), in which CRS and grid (``proj:``), and what files it has (assets with roles
and media types). Items are built from the status records alone, so describing a 67 Mpx scene opens no
raster. Hrefs are absolute URLs of this API (``base_url``); a scene's source, which the API does not serve,
is given by its storage URL (``gs://`` or ``file://``).

``datetime`` is when the scene or prediction was made: the records do not know when an image was taken.
"""

from __future__ import annotations

import datetime as dt
from pathlib import PurePosixPath
from typing import Any

import pystac
from pystac.extensions.projection import ProjectionExtension
from rasterio.warp import transform_bounds, transform_geom

from roadseg.documents import ImageInfo, JobRecord, PredictionRecord, SceneRecord, Status
from roadseg.errors import InvalidInput
from roadseg.storage import Storage

#: Web-map links extension: ``xyz`` links to the tile routes, so a STAC browser can show the layers.
WEB_MAP_LINKS = "https://stac-extensions.github.io/web-map-links/v1.2.0/schema.json"
COLLECTION_ID = "roadseg-scenes"
#: Points per footprint edge: a UTM rectangle is slightly curved in lon/lat.
EDGE_POINTS = 16
#: Media type and roles of each prediction output (docs/contracts.md lists the files).
PREDICTION_ASSETS: dict[str, tuple[str, list[str], str]] = {
    "mask.tif": (pystac.MediaType.COG, ["data"], "Road-surface mask (0/255)"),
    "probability.tif": (pystac.MediaType.COG, ["data"], "Road probability (float32, steps of 2^-16)"),
    "centerline.tif": (pystac.MediaType.COG, ["data"], "Road-centreline mask (0/255)"),
    "centerline_probability.tif": (pystac.MediaType.COG, ["data"], "Road-centreline probability"),
    "mask.png": (pystac.MediaType.PNG, ["visual"], "Road-surface mask"),
    "overlay.png": (pystac.MediaType.PNG, ["overview"], "Roads over transparency"),
    "image.png": (pystac.MediaType.PNG, ["overview"], "The input image"),
    "probability.png": (pystac.MediaType.PNG, ["visual"], "Road probability"),
    "centerline.png": (pystac.MediaType.PNG, ["visual"], "Road-centreline mask"),
    "centerline_overlay.png": (pystac.MediaType.PNG, ["overview"], "Centrelines over transparency"),
    "roads.geojson": (pystac.MediaType.GEOJSON, ["data"], "Road network (lines, the raster's CRS)"),
    "missing.geojson": (pystac.MediaType.GEOJSON, ["data"], "Candidate missing roads (lon/lat), best first"),
}
SOURCE_MEDIA_TYPES = {
    ".tif": pystac.MediaType.GEOTIFF,
    ".tiff": pystac.MediaType.GEOTIFF,
    ".jp2": pystac.MediaType.JPEG2000,
    ".png": pystac.MediaType.PNG,
    ".jpg": pystac.MediaType.JPEG,
    ".jpeg": pystac.MediaType.JPEG,
    ".vrt": "application/xml",
}


def footprint(crs: str, bounds: list[float]) -> tuple[dict[str, Any], list[float]]:
    """(GeoJSON polygon, bbox) in lon/lat of a raster's ``[minx, miny, maxx, maxy]`` in ``crs``."""
    left, bottom, right, top = bounds
    steps = [i / EDGE_POINTS for i in range(EDGE_POINTS)]
    ring = (
        [(left + (right - left) * t, bottom) for t in steps]
        + [(right, bottom + (top - bottom) * t) for t in steps]
        + [(right - (right - left) * t, top) for t in steps]
        + [(left, top - (top - bottom) * t) for t in steps]
    )
    geometry = transform_geom(crs, "EPSG:4326", {"type": "Polygon", "coordinates": [[*ring, ring[0]]]})
    return dict(geometry), list(transform_bounds(crs, "EPSG:4326", left, bottom, right, top, densify_pts=21))


def _base_item(kind: str, record: JobRecord, info: ImageInfo, url: str) -> pystac.Item:
    """An item with footprint, time, ``proj:`` fields and its self link, from a record's image facts."""
    if not info.georeferenced or not info.crs or not info.bounds:
        raise InvalidInput(f"{kind} {record.id} is not georeferenced: it has no STAC item")
    geometry, bbox = footprint(info.crs, info.bounds)
    item = pystac.Item(
        id=record.id,
        geometry=geometry,
        bbox=bbox,
        datetime=dt.datetime.fromtimestamp(record.created, dt.UTC),
        properties={
            "created": _iso(record.created),
            "updated": _iso(record.updated),
            "roadseg:kind": kind,
        },
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = info.crs
    proj.shape = [info.height, info.width]
    proj.transform = [float(v) for v in info.transform[:6]]
    proj.bbox = [float(v) for v in info.bounds]
    item.set_self_href(url)
    return item


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def _tile_links(item: pystac.Item, tiles: str, layers: list[str]) -> None:
    """One ``xyz`` link per layer (web-map-links extension); ``{z}/{x}/{y}`` stay templates."""
    item.stac_extensions.append(WEB_MAP_LINKS)
    for layer in layers:
        href = f"{tiles}/{layer}/{{z}}/{{x}}/{{y}}.png"
        item.add_link(pystac.Link(rel="xyz", target=href, media_type=pystac.MediaType.PNG, title=layer))


def prediction_item(record: PredictionRecord, base_url: str, files: list[str]) -> dict[str, Any]:
    """The STAC item of a finished georeferenced prediction; ``files`` are its downloadable outputs."""
    if record.status != Status.DONE:
        raise InvalidInput(f"prediction {record.id} is {record.status}: it has a STAC item once it is done")
    api = f"{base_url}/api/v1/predictions/{record.id}"
    item = _base_item("prediction", record, record.info, f"{api}/item.json")
    model = record.model or {}
    item.properties |= {
        "roadseg:model_name": model.get("model_name"),
        "roadseg:model_version": model.get("model_version"),
        "roadseg:model_backend": model.get("backend"),
        "roadseg:threshold": record.threshold,
        "roadseg:input_name": record.input_name,
    }
    for name in files:
        if name in PREDICTION_ASSETS:
            media_type, roles, title = PREDICTION_ASSETS[name]
            key = name.replace(".", "_")
            item.add_asset(key, pystac.Asset(f"{api}/files/{name}", title, media_type=media_type, roles=roles))
    layers = ["image", "surface", "centerline", "probability"]
    _tile_links(item, f"{api}/tiles", layers)
    if record.scene_id:
        scene = f"{base_url}/api/v1/scenes/{record.scene_id}/item.json"
        item.add_link(pystac.Link(rel="derived_from", target=scene, media_type=pystac.MediaType.GEOJSON))
    return item.to_dict(transform_hrefs=False)


def scene_item(storage: Storage, record: SceneRecord, base_url: str) -> dict[str, Any]:
    """The STAC item of an ingested scene: its source (storage URL) and, once cut, its tile manifest."""
    api = f"{base_url}/api/v1/scenes/{record.id}"
    item = _base_item("scene", record, record, f"{api}/item.json")
    item.properties |= {"roadseg:status": str(record.status), "roadseg:mosaic_files": record.mosaic_files}
    source = record.source_url
    if not source:
        if record.source_key is None:
            raise InvalidInput(f"scene {record.id} has neither a source_key nor a source_url")
        source = storage.url_for(record.source_key)
    media_type = SOURCE_MEDIA_TYPES.get(PurePosixPath(source).suffix.lower())
    item.add_asset("source", pystac.Asset(source, "Source image", media_type=media_type, roles=["data"]))
    if record.manifest_key:
        manifest = storage.url_for(record.manifest_key)
        item.add_asset(
            "manifest", pystac.Asset(manifest, "Tile manifest", media_type=pystac.MediaType.JSON, roles=["metadata"])
        )
    _tile_links(item, f"{api}/tiles", ["image"])
    return item.to_dict(transform_hrefs=False)


def scenes_collection(records: list[SceneRecord], base_url: str) -> dict[str, Any]:
    """A static collection linking the item of every georeferenced scene, with their joint extent."""
    scenes = [(r, r.crs, r.bounds) for r in records if r.georeferenced and r.crs and r.bounds]
    boxes = [footprint(crs, bounds)[1] for _, crs, bounds in scenes]
    bbox = (
        [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
        if boxes
        else [-180.0, -90.0, 180.0, 90.0]
    )
    times = [dt.datetime.fromtimestamp(r.created, dt.UTC) for r, _, _ in scenes]
    interval: list[dt.datetime | None] = [min(times), max(times)] if times else [None, None]
    collection = pystac.Collection(
        id=COLLECTION_ID,
        description="Scenes ingested by roadseg (aerial and satellite images cut into tiles for road mapping).",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([interval])),
        title="roadseg scenes",
        license="other",
    )
    collection.set_self_href(f"{base_url}/api/v1/stac/catalog.json")
    collection.set_root(collection)
    for record, _, _ in scenes:
        href = f"{base_url}/api/v1/scenes/{record.id}/item.json"
        collection.add_link(pystac.Link(rel="item", target=href, media_type=pystac.MediaType.GEOJSON))
    return collection.to_dict(transform_hrefs=False)
