"""Routes between two points on a prediction's road network (docs/contracts.md §7 does the graph work).

The gateway's part is the coordinate bookkeeping: the page clicks in pixels, API clients may
send lon/lat; both are checked against the image bounds (a point outside the image is the
client's mistake, 400). Georeferenced routes come back as lon/lat GeoJSON (RFC 7946) with the
length in metres; every answer also carries the path in pixels so the page can draw it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from roadseg.documents import ImageInfo
from roadseg.errors import InvalidInput
from roadseg.geo import crs_to_pixels, pixels_to_crs, transform_points
from roadseg.storage import Storage

LONLAT = "EPSG:4326"


def to_pixels(points: list[tuple[float, float]], crs: str, info: ImageInfo) -> np.ndarray:
    """Points as (column, row) pixel coordinates of the predicted image, checked to lie inside it."""
    pts = np.asarray(points, dtype=float)
    if crs == LONLAT:
        if not info.georeferenced or info.crs is None:
            raise InvalidInput("lon/lat points need a georeferenced image; send pixel coordinates (crs 'pixel')")
        pts = crs_to_pixels(transform_points(pts, LONLAT, info.crs), info.transform)
    width, height = info.width, info.height
    for name, (x, y) in zip(("start", "end"), pts, strict=True):
        if not (0 <= x <= width and 0 <= y <= height):
            raise InvalidInput(f"{name} point ({x:.1f}, {y:.1f}) px is outside the image ({width} x {height} px)")
    return pts


def route_between(
    storage: Storage,
    roads_key: str,
    info: ImageInfo,
    start: tuple[float, float],
    end: tuple[float, float],
    crs: str,
) -> dict[str, Any]:
    """GeoJSON Feature of the shortest road path with ``length_m`` (georeferenced) or ``length_px``.

    Raises the road-network errors (TooFarFromRoad 422, NoRoute 404) unchanged.
    ``properties.pixel_coordinates`` repeats the path in image pixels for drawing.
    """
    from roadseg.roadnet.graph import graph_from_geojson
    from roadseg.roadnet.route import shortest_route

    pixels = to_pixels([start, end], crs, info)
    graph = graph_from_geojson(json.loads(storage.read_text(roads_key)))
    if info.georeferenced and info.crs is not None:
        lonlat = transform_points(pixels_to_crs(pixels, info.transform), info.crs, LONLAT)
        feature = shortest_route(graph, lonlat[0], lonlat[1], point_crs=LONLAT)
        path = np.asarray(feature["geometry"]["coordinates"], dtype=float)[:, :2]
        pixel_path = crs_to_pixels(transform_points(path, LONLAT, info.crs), info.transform)
    else:
        feature = shortest_route(graph, pixels[0], pixels[1], point_crs="pixel")
        pixel_path = np.asarray(feature["geometry"]["coordinates"], dtype=float)[:, :2]
    feature["properties"]["pixel_coordinates"] = np.round(pixel_path, 2).tolist()
    return feature
