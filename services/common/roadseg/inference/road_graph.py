"""The road network of a predicted mask as GeoJSON (docs/contracts.md §7), traced in one process.

Masks above ``ROADSEG_GRAPH_MAX_PIXELS`` are traced by the gateway's workers in shards instead, with the
same :func:`graph_params` and :func:`mask_georeference`.
"""

from __future__ import annotations

from typing import Any

from rasterio.io import DatasetReader

from roadseg import raster
from roadseg.roadnet.params import GraphParams


def road_graph_geojson(
    mask: DatasetReader, max_pixels: int, window: int = 2048, pixel_size_m: float | None = None
) -> dict[str, Any] | None:
    """Road network GeoJSON of an open mask (docs/contracts.md §7); ``None`` when it is above ``max_pixels``.

    The mask is read window by window (``window`` pixels, ``ROADSEG_GRAPH_WINDOW``); the limit bounds the
    time one process spends (larger masks: :func:`roadseg.gateway.sharded.plan_roads`) and the graph's size.
    ``pixel_size_m`` is a plain image's ground pixel size (the user's): its graph is then cleaned and
    measured in metres like a georeferenced one's.
    """
    from roadseg.roadnet.graph import RasterMask, graph_to_geojson, mask_to_graph

    if mask.width * mask.height > max_pixels:
        return None
    transform, crs = mask_georeference(mask)
    return graph_to_geojson(mask_to_graph(RasterMask(mask), transform, crs, graph_params(window, pixel_size_m)))


def graph_params(window: int, pixel_size_m: float | None = None) -> GraphParams:
    """How a prediction's mask is vectorized: ``window`` pixels at a time; a plain image's pixel size if given."""
    return GraphParams(window=window, pixel_size_m=pixel_size_m or None)


def mask_georeference(mask: DatasetReader) -> tuple[Any, str | None]:
    """(transform, CRS) of a mask for its road graph; (None, None) for pixel coordinates."""
    if not raster.is_georeferenced(mask):
        return None, None
    return mask.transform, raster.crs_string(mask.crs)
