"""Coordinate helpers: pixel <-> CRS, metre lengths (geodesic for lon/lat), local UTM for metric work.

Lengths in metres must be right for EPSG:4326 rasters too (a degree of longitude is not a degree of
latitude), so geographic CRSs use pyproj's geodesic on the CRS ellipsoid; projected CRSs use planar
length times the CRS's linear unit.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import shapely
from numpy.typing import ArrayLike
from pyproj import CRS, Geod, Transformer
from shapely.geometry import LineString
from shapely.geometry.base import BaseGeometry

if TYPE_CHECKING:
    import networkx as nx

#: A rasterio-style affine's six numbers (a, b, c, d, e, f): a tuple, or the list a graph's JSON keeps.
Affine6 = Sequence[float]


@lru_cache(maxsize=64)
def to_crs(crs: str | None) -> CRS | None:
    """Parse a CRS string (EPSG code, WKT, PROJ); None stays None (plain image, pixel coordinates)."""
    return None if crs in (None, "", "pixel") else CRS.from_user_input(crs)


def crs_string(crs: object) -> str | None:
    """A compact, round-trippable string for a CRS (``EPSG:xxxx`` when it has one, else WKT)."""
    if crs is None:
        return None
    crs = CRS.from_user_input(crs)
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def oriented_line(line: LineString, g: nx.MultiGraph, u: Hashable, v: Hashable) -> LineString:
    """``line`` (joining nodes ``u`` and ``v`` of ``g``) running from ``u`` to ``v``.

    Graphs report an undirected edge either way round, so the line's first point decides: kept when it
    is nearer ``u`` than ``v``, else reversed.
    """
    first = line.coords[0]
    du = math.dist(first, (g.nodes[u]["x"], g.nodes[u]["y"]))
    dv = math.dist(first, (g.nodes[v]["x"], g.nodes[v]["y"]))
    return line if du <= dv else LineString(line.coords[::-1])


def edge_line(g: nx.MultiGraph, u: Hashable, v: Hashable, k: int) -> LineString:
    """The ``geometry`` of edge (u, v, k) of a multigraph, running from ``u`` to ``v``."""
    return oriented_line(g.edges[u, v, k]["geometry"], g, u, v)


@lru_cache(maxsize=64)
def _geod(crs: str) -> Geod:
    parsed = to_crs(crs)
    return (parsed.get_geod() if parsed is not None else None) or Geod(ellps="WGS84")


def _unit_factor(crs: CRS) -> float:
    return crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0


def pixels_to_crs(points: np.ndarray, transform: Affine6 | None) -> np.ndarray:
    """Map pixel (x=col, y=row, continuous) coordinates through a rasterio-style affine (a, b, c, d, e, f)."""
    points = np.asarray(points, dtype=float)
    if transform is None:
        return points
    a, b, c, d, e, f = transform
    x, y = points[..., 0], points[..., 1]
    return np.stack([a * x + b * y + c, d * x + e * y + f], axis=-1)


def crs_to_pixels(points: np.ndarray, transform: Affine6 | None) -> np.ndarray:
    """Inverse of :func:`pixels_to_crs`."""
    points = np.asarray(points, dtype=float)
    if transform is None:
        return points
    a, b, c, d, e, f = transform
    det = a * e - b * d
    x, y = points[..., 0] - c, points[..., 1] - f
    return np.stack([(e * x - b * y) / det, (-d * x + a * y) / det], axis=-1)


def line_length_m(line: LineString, crs: str | None) -> float | None:
    """Length of a line in metres (geodesic for geographic CRSs); None without a CRS."""
    parsed = to_crs(crs)
    if parsed is None:
        return None
    if parsed.is_geographic:
        return float(_geod(crs).geometry_length(line))
    return float(line.length * _unit_factor(parsed))


def pixel_size_m(transform: Affine6, crs: str | None, shape: tuple[int, int]) -> float | None:
    """Ground size of one pixel in metres at the image centre: the mean of its width and height.

    Geodesic distances for geographic CRSs (a degree of longitude shrinks with latitude, so such
    pixels are not square on the ground); the CRS's linear unit for projected ones.
    """
    parsed = to_crs(crs)
    if parsed is None:
        return None
    a, b, c, d, e, f = transform
    if not parsed.is_geographic:
        return (math.hypot(a, d) + math.hypot(b, e)) / 2 * _unit_factor(parsed)
    cy, cx = shape[0] / 2, shape[1] / 2
    p0, px, py = pixels_to_crs(np.array([[cx, cy], [cx + 1, cy], [cx, cy + 1]]), transform)
    geod = _geod(crs)
    dx = geod.inv(p0[0], p0[1], px[0], px[1])[2]
    dy = geod.inv(p0[0], p0[1], py[0], py[1])[2]
    return (dx + dy) / 2


@lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> Transformer:
    """An always-xy Transformer between two CRSs, cached: building one is slow and the same pairs recur."""
    return Transformer.from_crs(to_crs(src), to_crs(dst), always_xy=True)


def transform_points(points: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Reproject an (N, 2) array of x, y between two CRSs (lon/lat order for geographic CRSs)."""
    points = np.asarray(points, dtype=float)
    if to_crs(src) == to_crs(dst):
        return points
    x, y = transformer(src, dst).transform(points[:, 0], points[:, 1])
    return np.stack([x, y], axis=-1)


def transform_geometry(geom: BaseGeometry, src: str, dst: str) -> BaseGeometry:
    """Reproject a shapely geometry."""
    if to_crs(src) == to_crs(dst):
        return geom
    return shapely.transform(geom, lambda xy: transform_points(xy, src, dst))


def local_metric_crs(
    crs: str, lon_lat_point: tuple[float, float] | None = None, sample_xy: ArrayLike | None = None
) -> str:
    """The CRS to measure in: ``crs`` itself when projected, else the UTM zone around the data."""
    parsed = to_crs(crs)
    if parsed is None or not parsed.is_geographic:
        return crs
    if lon_lat_point is None:
        lon_lat_point = tuple(np.asarray(sample_xy, dtype=float).reshape(-1, 2).mean(axis=0))
    lon, lat = lon_lat_point
    zone = int((lon + 180) // 6) % 60 + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"
