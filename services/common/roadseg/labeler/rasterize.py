"""Road geometries to a mask aligned pixel for pixel with a tile.

Centerlines are buffered in metres in a local metric CRS (the UTM zone of the tile centre),
whatever the tile's own CRS is: buffering in degrees would make roads elliptical and their width
depend on latitude. Area features (road polygons) are burned as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.features import rasterize
from rasterio.transform import array_bounds

from roadseg.errors import InvalidInput
from roadseg.labeler.widths import WidthSpec
from roadseg.mask_values import IGNORE

ROAD = 255
BACKGROUND = 0


@dataclass(frozen=True)
class TileGrid:
    """The pixel grid of one tile: what a mask must match exactly."""

    transform: Affine
    crs: CRS
    width: int
    height: int

    @classmethod
    def from_dataset(cls, ds) -> TileGrid:
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
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform((minx + maxx) / 2, (miny + maxy) / 2)
    zone = min(60, max(1, int((lon + 180.0) // 6.0) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def expand_bounds(bounds: tuple[float, float, float, float], metres: float, crs) -> tuple[float, float, float, float]:
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
    is_line = frame.geom_type.isin(["LineString", "MultiLineString"]).to_numpy()
    shapes = list(frame.geometry[~is_line])
    lines = frame[is_line]
    if len(lines):
        half = spec.widths(lines) / 2.0
        utm = metric_crs(grid)
        metric = lines.geometry.to_crs(utm)
        # Clip to the tile plus the widest half-width (+1 m): the pixels of this tile are unchanged,
        # and a 50 km motorway is not buffered whole for every tile it crosses.
        from rasterio.warp import transform_bounds

        minx, miny, maxx, maxy = transform_bounds(grid.crs, utm, *grid.bounds, densify_pts=21)
        margin = float(half.max()) + 1.0
        metric = metric.clip_by_rect(minx - margin, miny - margin, maxx + margin, maxy + margin)
        buffered = metric.buffer(half).to_crs(grid.crs)
        shapes.extend(g for g in buffered if g is not None and not g.is_empty)
    return shapes


def burn(shapes: Iterable, grid: TileGrid, valid: np.ndarray | None = None, ignore_value: int = IGNORE) -> np.ndarray:
    """Burn road shapes into a uint8 mask on the tile's pixel grid.

    255 inside any shape (pixel centre rule, ``all_touched=False``), 0 outside, ``ignore_value`` where the tile
    has no data (``valid`` False).
    """
    shapes = [(g, ROAD) for g in shapes]
    shape = (grid.height, grid.width)
    if shapes:
        mask = rasterize(shapes, out_shape=shape, transform=grid.transform, fill=BACKGROUND, dtype="uint8")
    else:
        mask = np.zeros(shape, dtype=np.uint8)
    if valid is not None:
        mask[~valid.astype(bool)] = ignore_value
    return mask
