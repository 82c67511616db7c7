"""Road geometries to a mask aligned pixel for pixel with a tile.

Centerlines are buffered in metres in a local metric CRS (the UTM zone of the tile centre),
whatever the tile's own CRS is: buffering in degrees would make roads elliptical and their width
depend on latitude. Area features (road polygons) are burned as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.features import rasterize
from rasterio.io import DatasetReader
from rasterio.transform import array_bounds
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from roadseg.errors import InvalidInput
from roadseg.labeler.widths import WidthSpec
from roadseg.mask_values import IGNORE

ROAD = 255
BACKGROUND = 0

_LONLAT = CRS.from_epsg(4326)
_LINES = (shapely.GeometryType.LINESTRING, shapely.GeometryType.MULTILINESTRING)
#: Segments per quarter circle of a road's round ends: GeoSeries.buffer's default, which the masks were made with.
QUAD_SEGS = 16


@dataclass(frozen=True)
class TileGrid:
    """The pixel grid of one tile: what a mask must match exactly."""

    transform: Affine
    crs: CRS
    width: int
    height: int

    @classmethod
    def from_dataset(cls, ds: DatasetReader) -> TileGrid:
        """The grid of an open raster; raises :class:`InvalidInput` without a CRS (vectors cannot be placed)."""
        if ds.crs is None:
            raise InvalidInput("the raster has no CRS; vector labels need a georeferenced scene")
        return cls(ds.transform, CRS.from_user_input(ds.crs), ds.width, ds.height)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) in the tile CRS."""
        return tuple(array_bounds(self.height, self.width, self.transform))


def metric_crs(grid: TileGrid) -> CRS:
    """The UTM zone (WGS 84) containing the tile centre: a metric CRS with < 0.1% scale error in the tile.

    A deterministic rule rather than ``estimate_utm_crs`` heuristics, so the same tile always gets the
    same CRS (the solaris reference mask, made in EPSG:32611, is reproduced exactly with it).
    """
    minx, miny, maxx, maxy = grid.bounds
    lon, lat = _transformer(grid.crs, _LONLAT).transform((minx + maxx) / 2, (miny + maxy) / 2)
    zone = min(60, max(1, int((lon + 180.0) // 6.0) + 1))
    return _utm_crs((32600 if lat >= 0 else 32700) + zone)


# Every tile of a scene shares its CRS and most share a UTM zone, so transformers and CRSs are built
# once (pyproj >= 3.1 makes both thread-safe, so the caches may be shared). Keyed by the text each CRS
# was made from: hashing a pyproj CRS exports its WKT, which cost more than the cache saved.
def _transformer(source: object, target: object) -> Transformer:
    return _transformer_between(_crs_text(source), _crs_text(target))


def _crs_text(crs: object) -> str:
    return crs.srs if isinstance(crs, CRS) else CRS.from_user_input(crs).srs  # e.g. a rasterio CRS


@functools.lru_cache(maxsize=32)
def _transformer_between(source: str, target: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(source), CRS.from_user_input(target), always_xy=True)


@functools.lru_cache(maxsize=16)
def _utm_crs(epsg: int) -> CRS:
    return CRS.from_epsg(epsg)


def _reproject(geoms: np.ndarray, source: CRS, target: CRS) -> np.ndarray:
    """``GeoSeries.to_crs`` for an array of geometries: the same coordinates, through the cached transformer."""
    if source.is_exact_same(target):
        return geoms
    return shapely.transform(geoms, _transformer(source, target).transform, include_z=None, interleaved=False)


def expand_bounds(
    bounds: tuple[float, float, float, float], metres: float, crs: object
) -> tuple[float, float, float, float]:
    """``bounds`` grown by at least ``metres`` on every side, in the units of ``crs``.

    Used to find the roads whose *buffer* reaches into a tile although their centerline stays
    just outside it. Generous on purpose (a few extra features cost nothing): degrees use the
    longitude scale at the tile's highest latitude, projected units are doubled to cover
    scale distortion (Web Mercator at 60 degrees is 2x).
    """
    if metres <= 0:
        return bounds
    crs = CRS.from_user_input(crs)
    minx, miny, maxx, maxy = bounds
    if crs.is_geographic:
        lat = min(89.0, max(abs(miny), abs(maxy)))
        dy = metres / 110_000.0
        dx = metres / (111_000.0 * max(np.cos(np.radians(lat)), 0.01))
    else:
        factor = crs.axis_info[0].unit_conversion_factor or 1.0  # metres per CRS unit
        dx = dy = 2.0 * metres / factor
    return (minx - dx, miny - dy, maxx + dx, maxy + dy)


def centerline_shapes(frame: gpd.GeoDataFrame, spec: WidthSpec, grid: TileGrid) -> list:
    """Road polygons in the tile CRS: lines buffered by half their width in metres, areas as they are."""
    if frame.empty:
        return []
    # Shapely arrays rather than GeoSeries: the same GEOS and PROJ calls without pandas' per-call overhead,
    # which was most of a tile's time.
    geoms = np.asarray(frame.geometry.array)
    is_line = np.isin(shapely.get_type_id(geoms), _LINES)
    shapes = list(geoms[~is_line])
    if is_line.any():
        half = spec.widths(frame if is_line.all() else frame[is_line]) / 2.0
        utm = metric_crs(grid)
        metric = _reproject(geoms[is_line], frame.crs, utm)
        # Clip to the tile plus the widest half-width (+1 m): the pixels of this tile are unchanged,
        # and a 50 km motorway is not buffered whole for every tile it crosses.
        minx, miny, maxx, maxy = _transformer(grid.crs, utm).transform_bounds(*grid.bounds, densify_pts=21)
        margin = float(half.max()) + 1.0
        metric = shapely.clip_by_rect(metric, minx - margin, miny - margin, maxx + margin, maxy + margin)
        buffered = _reproject(shapely.buffer(metric, half, quad_segs=QUAD_SEGS), utm, grid.crs)
        shapes.extend(g for g in buffered if g is not None and not g.is_empty)
    return shapes


def _geojson(geom: BaseGeometry) -> dict | BaseGeometry:
    """A polygon as a GeoJSON-like mapping built from its coordinate arrays; other geometries as they are.

    What rasterio would get from ``__geo_interface__``, which builds a Python tuple per vertex: for
    buffered roads (round ends, dozens of vertices) that was a quarter of a mask's time.
    """
    if isinstance(geom, Polygon):
        return {"type": "Polygon", "coordinates": _rings(geom)}
    if isinstance(geom, MultiPolygon):
        return {"type": "MultiPolygon", "coordinates": [_rings(part) for part in geom.geoms]}
    return geom


def _rings(polygon: Polygon) -> list:
    return [shapely.get_coordinates(ring).tolist() for ring in (polygon.exterior, *polygon.interiors)]


def burn(shapes: Iterable, grid: TileGrid, valid: np.ndarray | None = None, ignore_value: int = IGNORE) -> np.ndarray:
    """Burn road shapes into a uint8 mask on the tile's pixel grid.

    255 inside any shape (pixel centre rule, ``all_touched=False``), 0 outside, ``ignore_value`` where the tile
    has no data (``valid`` False).
    """
    shapes = [(_geojson(g), ROAD) for g in shapes]
    shape = (grid.height, grid.width)
    if shapes:
        mask = rasterize(shapes, out_shape=shape, transform=grid.transform, fill=BACKGROUND, dtype="uint8")
    else:
        mask = np.zeros(shape, dtype=np.uint8)
    if valid is not None and not valid.all():
        mask[~valid.astype(bool)] = ignore_value
    return mask
