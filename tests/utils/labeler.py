"""Helpers shared by the labeler and dataset tests (no tests here).

Scenes are tiled with the real ingest code (``roadseg.ingest.tiling``), so the labeler is tested
against exactly what ingest writes (docs/contracts.md §1).
"""

from __future__ import annotations

import json
from pathlib import Path

from roadseg.storage import LocalStorage, Storage

VEGAS_IMAGE = "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
VEGAS_ROADS = "AOI_2_Vegas_img0_roads.geojson"

#: Scene pixels (row, col) checked by eye on test-artifacts/label_vegas_overlay.png: on asphalt
#: (the two carriageways of the main road, two parking-lot aisles) and clearly off it (a grey
#: roof, the desert, the red-roofed building, the watermark strip's buildings).
VEGAS_ROAD_PIXELS = [(415, 300), (465, 300), (700, 398), (1050, 574), (843, 250)]
VEGAS_BACKGROUND_PIXELS = [(700, 290), (100, 600), (600, 560), (1200, 300)]


def ingest_scene(storage: Storage, scene_id: str, folder: Path, name: str, tile_size: int) -> dict:
    """Tile ``folder/name`` into ``storage`` as scene ``scene_id`` (docs/contracts.md §1) and return the manifest."""
    from roadseg.ingest.tiling import TileParams, tile_scene

    return tile_scene(storage, scene_id, LocalStorage(folder), name, TileParams(tile_size=tile_size))


def write_geojson(path: Path, features: list[dict], crs: str | None = None) -> Path:
    """A GeoJSON FeatureCollection; ``features`` are (geometry dict or None, properties) pairs as dicts."""
    collection: dict = {"type": "FeatureCollection", "features": features}
    if crs:
        collection["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(collection))
    return path


def line_feature(coords, **props) -> dict:
    return {"type": "Feature", "properties": props, "geometry": {"type": "LineString", "coordinates": coords}}


def mosaic(storage: Storage, manifest: dict, height: int, width: int):
    """The run's masks pasted back into scene pixels (valid part of each tile)."""
    import numpy as np

    full = np.zeros((height, width), np.uint8)
    for entry in manifest["tiles"]:
        col, row, w, h = entry["window"]
        with storage.open_raster(entry["mask_key"]) as ds:
            full[row : row + h, col : col + w] = ds.read(1)[:h, :w]
    return full
