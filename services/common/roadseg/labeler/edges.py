"""The seed's labeling method, on vectors: street edge lines cut the tile into regions.

The regions a street centerline runs through are road.

Polygonizing the noded union of the edge lines and the tile border yields every face of the
planar arrangement: blocks enclosed by curbs, and the street space between them (closed by the
tile border where streets leave the tile). This needs no pixel flood fill, so a gap of one pixel
in a rasterized curb cannot leak the road into a whole block.
"""

from __future__ import annotations

import geopandas as gpd
import shapely
from shapely.geometry import box
from shapely.ops import polygonize

from roadseg.labeler.rasterize import TileGrid


def edge_road_polygons(edges: gpd.GeoDataFrame, centerlines: gpd.GeoDataFrame, grid: TileGrid) -> list:
    """Faces of (edge lines + tile border) whose interior a centerline passes through, in the tile CRS.

    A centerline merely touching a face's boundary (e.g. ending on a curb) does not make it road:
    the interiors must intersect (DE-9IM ``T********``).
    """
    tile = box(*grid.bounds)
    lines = [g for g in shapely.clip_by_rect(edges.geometry.values, *grid.bounds) if not g.is_empty]
    lines.append(tile.exterior)
    faces = list(polygonize(shapely.unary_union(lines)))
    if not faces or centerlines.empty:
        return []
    center = shapely.unary_union(shapely.clip_by_rect(centerlines.geometry.values, *grid.bounds))
    return [face for face in faces if face.relate_pattern(center, "T********")]
