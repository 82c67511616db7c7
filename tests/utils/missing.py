"""Synthetic fixtures of the missing-roads tests (no tests here): a georeferenced image with painted roads,
its probability raster, and road vectors that miss one road and hold one road the image does not show.

The image is 512 x 512 px at 0.5 m in EPSG:32611 (256 m a side). Roads, 12 px wide and dark (what the
dark test model finds): ``north`` (row 100), ``south`` (row 330) and ``central`` (column 256), both
horizontal ones crossing the central one. The map has ``north`` and ``central`` (given in EPSG:4326, another
CRS than the image's) and ``phantom`` (column 440), which is not in the image; ``south`` is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from utils.gateway import write_geotiff

CRS = "EPSG:32611"
PIXEL = 0.5
ORIGIN = (500000.0, 4000000.0)
TRANSFORM = (PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])
SIZE = 512
ROAD_PX = 12
#: Painted roads: name -> ("row" | "col", centre pixel).
PAINTED = {"north": ("row", 100), "south": ("row", 330), "central": ("col", 256)}
PHANTOM_COL = 440


def road_image(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Light textured ground with the painted roads dark."""
    rng = np.random.default_rng(seed)
    image = rng.integers(170, 230, size=(size, size, 3), dtype=np.uint8)
    for axis, centre in PAINTED.values():
        lo, hi = centre - ROAD_PX // 2, centre + ROAD_PX // 2
        if axis == "row":
            image[lo:hi, :] = 40
        else:
            image[:, lo:hi] = 40
    return image


def write_scene(folder: Path, name: str = "scene.tif") -> Path:
    """The image as a georeferenced GeoTIFF."""
    return write_geotiff(folder / name, road_image(), CRS, TRANSFORM)


def write_probabilities(path: Path) -> Path:
    """A float32 probability GeoTIFF on the image's grid: 0.9 on the painted roads, 0.02 elsewhere."""
    import rasterio
    from affine import Affine

    road = road_image()[..., 0] < 100
    prob = np.where(road, 0.9, 0.02).astype(np.float32)
    profile = {"driver": "GTiff", "width": SIZE, "height": SIZE, "count": 1, "dtype": "float32"}
    with rasterio.open(path, "w", crs=CRS, transform=Affine(*TRANSFORM), **profile) as ds:
        ds.write(prob, 1)
    return path


def scene_xy(col: float, row: float) -> tuple[float, float]:
    """Scene coordinates (EPSG:32611) of a pixel position."""
    return ORIGIN[0] + col * PIXEL, ORIGIN[1] - row * PIXEL


def road_line(name: str) -> list[tuple[float, float]]:
    """A road's centreline across the whole image, in scene coordinates."""
    if name == "phantom":
        return [scene_xy(PHANTOM_COL, 0), scene_xy(PHANTOM_COL, SIZE)]
    axis, centre = PAINTED[name]
    if axis == "row":
        return [scene_xy(0, centre), scene_xy(SIZE, centre)]
    return [scene_xy(centre, 0), scene_xy(centre, SIZE)]


def write_vectors(path: Path, names: tuple[str, ...] = ("north", "central", "phantom"), crs: str = "EPSG:4326") -> Path:
    """The map's roads as GeoJSON, reprojected to ``crs`` (EPSG:4326 without a crs member, as RFC 7946 says)."""
    from pyproj import Transformer

    to = Transformer.from_crs(CRS, crs, always_xy=True)
    features = []
    for name in names:
        coords = [list(to.transform(x, y)) for x, y in road_line(name)]
        features.append(
            {"type": "Feature", "properties": {"name": name}, "geometry": {"type": "LineString", "coordinates": coords}}
        )
    collection: dict = {"type": "FeatureCollection", "features": features}
    if crs != "EPSG:4326":
        collection["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{crs.split(':')[1]}"}}
    path.write_text(json.dumps(collection))
    return path


def write_far_vectors(path: Path) -> Path:
    """One road line in Paris (EPSG:4326): valid vectors that lie nowhere near the image."""
    line = {"type": "LineString", "coordinates": [[2.35, 48.85], [2.36, 48.86]]}
    collection = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": line}]}
    path.write_text(json.dumps(collection))
    return path
