"""Helpers for the map tests (tiles, STAC, page): a georeferenced prediction and a multi-file scene."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from utils.gateway import road_image, write_geotiff


def predict_geotiff(client: Any, tmp_path: Path, size: int = 512) -> tuple[dict[str, Any], Path]:
    """(record, source path) of a finished prediction of a UTM GeoTIFF (0.5 m pixels, dark roads)."""
    src = write_geotiff(tmp_path / "scene.tif", road_image(size, size))
    with open(src, "rb") as fh:
        r = client.post("/api/v1/predictions", files={"file": ("scene.tif", fh, "image/tiff")})
    assert r.status_code == 201, r.text
    return r.json(), src


def register_mosaic_scene(storage: Any, tmp_path: Path, parts: int = 2) -> tuple[dict[str, Any], str]:
    """(record, VRT key) of a scene of ``parts`` 16-bit files side by side (300 x 400 px, 0.5 m each).

    Registered and planned (its stretch fixed) by ingest's own functions, as ``POST /api/v1/scenes`` with
    ``uris`` and the first ingest task do; the tiles for the model are not cut (the map does not need them).
    """
    from roadseg.ingest.scene_jobs import plan_scene, register_scene, scene_id_for
    from roadseg.ingest.tiling import TileParams
    from roadseg.mosaic import build_mosaic

    rng = np.random.default_rng(3)
    paths = []
    for i in range(parts):
        path = tmp_path / f"part{i}.tif"
        profile = {"driver": "GTiff", "width": 300, "height": 400, "count": 3, "dtype": "uint16", "crs": "EPSG:32611"}
        transform = rasterio.Affine(0.5, 0, 500000.0 + 150.0 * i, 0, -0.5, 4000000.0)
        with rasterio.open(path, "w", transform=transform, **profile) as ds:
            ds.write(rng.integers(200, 4000, size=(3, 400, 300), dtype=np.uint16))
        paths.append(str(path))
    built = build_mosaic(paths)
    params = TileParams()
    scene_id = scene_id_for(f"mosaic:test:{tmp_path}", params)
    key = f"scenes/{scene_id}/source.vrt"
    storage.write_text(key, built.xml)
    register_scene(storage, scene_id, storage, key, params, source_key=key, filename=key, mosaic_files=parts)
    plan_scene(storage, scene_id)
    return json.loads(storage.read_text(f"scenes/{scene_id}/status.json")), key
