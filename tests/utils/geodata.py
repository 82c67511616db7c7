"""Synthetic stand-ins for the ../shared datasets: the same formats, folder layout and georeferencing, tiny.

``tests/data/make_fixtures.py`` writes the committed copies under ``tests/data/<dataset>/`` (the names of
``../shared/data``); tests that need a bigger scene of the same kind (drills that must outlast an outage)
call :func:`write_vegas_like` at test time. Nothing here is real imagery and no figure measured on it says
anything about a model: these files only have the right format. Tests of accuracy, and cross-checks
against published reference outputs, keep reading ``../shared``.

The Vegas-like scene (SpaceNet 3 format): an RGBA uint8 GeoTIFF in EPSG:4326 at the real tile's corner and
pixel size (2.7e-6 degrees: 0.30 m north-south, 0.24 m east-west), with its road centrelines as GeoJSON
carrying SpaceNet's attributes (``lane_number``, ``road_type`` as strings, ``speed_mph``). Asphalt is
painted ``lane_number`` x 3.7 m wide around each centreline, except the west street, painted 1.5 m east
of its vector so that the labeler's misalignment check has something to find. The top rows are bare
desert (no road), and a small triangle in the bottom-left corner has alpha 0 (no data).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: The SpaceNet Vegas img0 tile's top-left corner and the solaris input's (EPSG:4326), and their pixel size.
VEGAS_ORIGIN = (-115.1706276, 36.2406177)
SOLARIS_ORIGIN = (-115.2338076, 36.1423377)
DEGREES_PER_PX = 2.7e-6
LANE_WIDTH_M = 3.7

#: Road layout of the Vegas-like scene on a 280 px grid: (name, [(row, col), ...], lane_number, road_type,
#: how far east of its centreline the asphalt is painted in metres). Lines end on the scene's edges and
#: share a vertex wherever they meet (the road graph's junctions).
VEGAS_SIZE = 280
VEGAS_STREETS = [
    ("main road", [(100, 0), (100, 30), (100, 200), (100, 280)], "3", "2", 0.0),
    ("south street", [(100, 200), (220, 200), (280, 200)], "1", "6", 0.0),
    ("east branch", [(220, 200), (220, 280)], "2", "5", 0.0),
    ("west street", [(100, 30), (280, 30)], "1", "6", 1.5),
]
GROUND_RGB = (190, 170, 140)
ASPHALT_RGB = (70, 70, 75)


def _transform(origin: tuple[float, float]):
    from rasterio.transform import from_origin

    return from_origin(origin[0], origin[1], DEGREES_PER_PX, DEGREES_PER_PX)


def _lonlat(transform, row: float, col: float) -> tuple[float, float]:
    x, y = transform @ (col, row)
    return round(x, 10), round(y, 10)


def vegas_roads(size: int = VEGAS_SIZE) -> dict:
    """The road centrelines of a ``size`` px Vegas-like scene as a GeoJSON FeatureCollection (EPSG:4326)."""
    transform, scale = _transform(VEGAS_ORIGIN), size / VEGAS_SIZE
    features = []
    for road_id, (name, points, lanes, road_type, _) in enumerate(VEGAS_STREETS):
        coords = [_lonlat(transform, row * scale, col * scale) for row, col in points]
        props = {"name": name, "road_id": road_id, "lane_number": lanes, "road_type": road_type, "speed_mph": 25}
        geometry = {"type": "LineString", "coordinates": coords}
        features.append({"type": "Feature", "properties": props, "geometry": geometry})
    return {"type": "FeatureCollection", "features": features}


def _painted_roads(roads: dict, shape: tuple[int, int], transform) -> np.ndarray:
    """Where asphalt is painted: each centreline buffered by half its lane width in UTM (plus its offset)."""
    import geopandas as gpd
    from rasterio.features import rasterize
    from shapely.affinity import translate

    frame = gpd.GeoDataFrame.from_features(roads["features"], crs="EPSG:4326").to_crs(32611)
    offsets = {name: east for name, *_, east in VEGAS_STREETS}
    shapes = [
        translate(line, xoff=offsets[name]).buffer(int(lanes) * LANE_WIDTH_M / 2)
        for line, name, lanes in zip(frame.geometry, frame["name"], frame["lane_number"], strict=True)
    ]
    surface = gpd.GeoSeries(shapes, crs=32611).to_crs(4326)
    return rasterize([(s, 1) for s in surface], out_shape=shape, transform=transform, dtype="uint8") > 0


def write_vegas_like(folder: Path, size: int = VEGAS_SIZE, seed: int = 0) -> tuple[Path, Path]:
    """``RGB-PanSharpen_AOI_2_Vegas_img0.tif`` and ``AOI_2_Vegas_img0_roads.geojson`` in ``folder``; their paths."""
    import rasterio

    folder.mkdir(parents=True, exist_ok=True)
    transform = _transform(VEGAS_ORIGIN)
    roads = vegas_roads(size)
    road = _painted_roads(roads, (size, size), transform)
    rng = np.random.default_rng(seed)
    colour = np.where(road[..., None], np.array(ASPHALT_RGB), np.array(GROUND_RGB))
    rgb = np.clip(colour + rng.normal(0, 2, (size, size, 3)), 0, 255).astype(np.uint8)
    rows, cols = np.mgrid[:size, :size]
    alpha = np.where(rows - cols > size - 18, 0, 255).astype(np.uint8)  # no data: a corner of ~150 px
    rgb[alpha == 0] = 0
    image = folder / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 4,
        "dtype": "uint8",
        "crs": "EPSG:4326",
        "transform": transform,
        "photometric": "RGB",
        "alpha": "YES",
        "compress": "deflate",
        "predictor": 2,
    }
    with rasterio.open(image, "w", **profile) as dst:
        dst.write(np.concatenate([np.moveaxis(rgb, -1, 0), alpha[None]]))
    vectors = folder / "AOI_2_Vegas_img0_roads.geojson"
    vectors.write_text(json.dumps(roads, indent=1) + "\n")
    return image, vectors


#: The solaris-like input: single-band uint16 at the solaris input's corner, ``SOLARIS_SIZE`` px square.
SOLARIS_SIZE = 200


def solaris_values(size: int = SOLARIS_SIZE) -> np.ndarray:
    """A smooth uint16 field (every percentile a different value) crossed by two darker roads."""
    rows, cols = np.mgrid[:size, :size]
    values = 1500 + 9 * cols + 5 * rows
    values[np.abs(rows - size // 2) < 8] -= 700
    values[np.abs(cols - size // 3) < 6] -= 500
    return values.astype(np.uint16)


def write_solaris_like(folder: Path, size: int = SOLARIS_SIZE) -> Path:
    """``road_mask_input.tif`` in ``folder``: one uint16 band, EPSG:4326, 2.7e-6 degree pixels."""
    import rasterio

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "road_mask_input.tif"
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:4326",
        "transform": _transform(SOLARIS_ORIGIN),
        "compress": "deflate",
        "predictor": 2,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(solaris_values(size)[None])
    return path


def road_crop(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 aerial-looking crop with one straight road, and its 0/255 mask (low noise: small files)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    offset, width = int(rng.integers(8, size - 16)), int(rng.integers(4, 8))
    road = (cols >= offset) & (cols < offset + width) if seed % 2 else (rows >= offset) & (rows < offset + width)
    ground = np.array([80, 100, 60]) + rng.integers(-20, 20, 3)
    image = np.where(road[..., None], np.array([95, 95, 100]), ground) + rng.normal(0, 3, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8), np.where(road, 255, 0).astype(np.uint8)


def write_crops(folder: Path, splits: dict[str, int], size: int, image_format: str, seed: int = 0) -> None:
    """A folder dataset ``{split}/images/<name>`` + ``{split}/masks/<stem>.png`` (0/255), as in ../shared.

    ``image_format``: ``"jpg"`` (massachusetts-crops: JPEG q95 without chroma subsampling; its test split also
    holds a PNG) or ``"rgba"`` (cil-2022: RGBA PNG with alpha 255).
    """
    from PIL import Image

    for split, count in splits.items():
        for sub in ("images", "masks"):
            (folder / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, mask = road_crop(size, seed + 100 * len(split) + i)
            stem = f"{split}-{i}"
            Image.fromarray(mask).save(folder / split / "masks" / f"{stem}.png", optimize=True)
            if image_format == "rgba":
                rgba = np.concatenate([image, np.full((size, size, 1), 255, np.uint8)], axis=-1)
                Image.fromarray(rgba, "RGBA").save(folder / split / "images" / f"{stem}.png", optimize=True)
            elif split == "test" and i == count - 1:  # massachusetts-crops/test mixes JPEG and PNG images
                Image.fromarray(image).save(folder / split / "images" / f"{stem}.png", optimize=True)
            else:
                Image.fromarray(image).save(folder / split / "images" / f"{stem}.jpg", quality=95, subsampling=0)


def apls_pair() -> tuple[dict, dict]:
    """A ground-truth road and a proposal that finds only its first half, in EPSG:4326 GeoJSON.

    The truth runs 200 m due north from a point in Las Vegas as two edges of 100 m (a node in the middle);
    the proposal is the first edge alone.
    """
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    lon, lat = -115.17, 36.24
    points = [(lon, lat)]
    for _ in range(2):
        lon, lat, _back = geod.fwd(lon, lat, 0.0, 100.0)
        points.append((round(lon, 10), round(lat, 10)))

    def lines(*pairs):
        features = [
            {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [a, b]}}
            for a, b in pairs
        ]
        return {"type": "FeatureCollection", "features": features}

    return lines((points[0], points[1]), (points[1], points[2])), lines((points[0], points[1]))
