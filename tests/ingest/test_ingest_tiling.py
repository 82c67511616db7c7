"""Tiling georeferenced scenes: bounds, pixels, CRS/transform, stretch, idempotency, CLI, GCS.

The scenes are the synthetic stand-ins in tests/data (utils.geodata), in the formats of the SpaceNet Vegas
tile (280 px RGBA uint8, EPSG:4326) and the solaris input (200 px, one uint16 band).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from roadseg.ingest.tiling import TileParams, manifest_key, tile_grid, tile_scene
from roadseg.raster import Stretch, read_rgb_window
from roadseg.storage import GCSStorage, LocalStorage, Storage, split_url
from utils.paths import DATA

VEGAS = DATA / "spacenet-vegas" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
SOLARIS = DATA / "solaris-road-mask" / "road_mask_input.tif"
VEGAS_SIZE, SOLARIS_SIZE = 280, 200


def tile_file(storage: Storage, path: Path, scene_id: str, params: TileParams) -> dict:
    source, key = split_url(path.as_uri())
    return tile_scene(storage, scene_id, source, key, params)


def check_tiles_against_scene(storage: Storage, manifest: dict, scene_path: Path) -> None:
    """Every tile: scene CRS, the scene's transform shifted to the tile, and exactly the scene's pixels."""
    size = manifest["tile_size"]
    stretch = Stretch.from_dict(manifest["stretch"])
    with rasterio.open(scene_path) as scene:
        for entry in manifest["tiles"]:
            col_off, row_off, width, height = entry["window"]
            window = Window(col_off, row_off, width, height)
            expected_rgb, expected_valid = read_rgb_window(scene, window, stretch)
            with storage.open_raster(entry["key"]) as tile:
                assert (tile.width, tile.height, tile.count, tile.dtypes[0]) == (size, size, 3, "uint8")
                assert tile.crs == scene.crs
                assert tile.transform.almost_equals(scene.window_transform(Window(col_off, row_off, size, size)))
                pixels = np.moveaxis(tile.read(), 0, -1)
                mask = tile.dataset_mask()
            np.testing.assert_array_equal(pixels[:height, :width], expected_rgb)
            np.testing.assert_array_equal(mask[:height, :width] > 0, expected_valid)
            assert not mask[height:, :].any() and not mask[:, width:].any()  # padding is nodata
            assert entry["padded"] == (width < size or height < size)


@pytest.mark.parametrize(("tile_size", "overlap"), [(128, 0), (96, 16)])
def test_vegas_tiles_reassemble_the_scene(tmp_path, tile_size, overlap):
    storage = LocalStorage(tmp_path / "store")
    scene = VEGAS
    manifest = tile_file(storage, scene, "vegas", TileParams(tile_size, overlap))
    with rasterio.open(scene) as ds:
        bounds, crs, transform = ds.bounds, ds.crs, ds.transform
    assert manifest["crs"] == "EPSG:4326" and manifest["georeferenced"] is True
    assert manifest["transform"] == list(transform)[:6]
    assert manifest["width"] == manifest["height"] == VEGAS_SIZE and manifest["bands"] == 4
    cells = tile_grid(VEGAS_SIZE, VEGAS_SIZE, tile_size, overlap)
    assert len(cells) == {128: 3 * 3, 96: 4 * 4}[tile_size]  # origins 0, 128, 256 / 0, 80, 160, 240
    assert len(manifest["tiles"]) == len(cells) and manifest["skipped_empty"] == 0
    assert [t["id"] for t in manifest["tiles"]] == [c.tile_id for c in cells]
    assert storage.list("scenes/vegas/tiles") == sorted(t["key"] for t in manifest["tiles"])
    # The union of the tile bounds is exactly the scene: same extreme edges...
    tile_bounds = np.array([t["bounds"] for t in manifest["tiles"]])
    assert tile_bounds[:, 0].min() == pytest.approx(bounds.left, abs=1e-12)
    assert tile_bounds[:, 1].min() == pytest.approx(bounds.bottom, abs=1e-12)
    assert tile_bounds[:, 2].max() == pytest.approx(bounds.right, abs=1e-12)
    assert tile_bounds[:, 3].max() == pytest.approx(bounds.top, abs=1e-12)
    # ...and the windows cover every scene pixel (exactly once without overlap).
    coverage = np.zeros((VEGAS_SIZE, VEGAS_SIZE), dtype=np.int32)
    for t in manifest["tiles"]:
        col_off, row_off, width, height = t["window"]
        coverage[row_off : row_off + height, col_off : col_off + width] += 1
    assert coverage.min() >= 1 and (overlap > 0 or coverage.max() == 1)
    check_tiles_against_scene(storage, manifest, scene)
    assert json.loads(storage.read_text(manifest_key("vegas"))) == manifest
    with storage.open_raster(manifest["tiles"][0]["key"]) as tile:
        assert tile.crs == crs


def test_uint16_scene_is_stretched_into_uint8_tiles(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    manifest = tile_file(storage, SOLARIS, "solaris", TileParams(64, 0, (1.0, 99.0)))
    assert manifest["dtype"] == "uint16" and manifest["stretch"]["mode"] == "percentile"
    assert manifest["stretch"]["percentiles"] == [1.0, 99.0]
    assert len(manifest["tiles"]) == 4 * 4
    check_tiles_against_scene(storage, manifest, SOLARIS)
    bands = []
    for entry in manifest["tiles"]:
        with storage.open_raster(entry["key"]) as tile:
            bands.append(tile.read(1, masked=True))
    assert min(b.min() for b in bands) == 0 and max(b.max() for b in bands) == 255  # the full 8-bit range is used


def test_rerun_skips_existing_tiles_and_restores_missing_ones(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    params = TileParams(64, 0)
    first = tile_file(storage, VEGAS, "again", params)
    keys = storage.list("scenes/again/tiles")
    removed = first["tiles"][7]["key"]
    original = storage.read_bytes(removed)
    storage.delete(removed)
    storage.delete(manifest_key("again"))
    before = {k: storage.path(k).stat().st_mtime_ns for k in keys if k != removed}
    second = tile_file(storage, VEGAS, "again", params)
    assert second == first
    assert storage.list("scenes/again/tiles") == keys
    assert storage.read_bytes(removed) == original  # deterministic tile content
    assert {k: storage.path(k).stat().st_mtime_ns for k in before} == before  # existing tiles not rewritten


def test_entirely_nodata_tiles_are_skipped_and_counted(tmp_path):
    data = np.zeros((3, 300, 300), dtype=np.uint16)
    data[:, 150:, 150:] = np.arange(1, 150 * 150 + 1, dtype=np.uint16).reshape(150, 150)
    path = tmp_path / "half.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=300,
        height=300,
        count=3,
        dtype="uint16",
        nodata=0,
        crs="EPSG:32611",
        transform=from_origin(600000, 4000000, 1, 1),
    ) as dst:
        dst.write(data)
    manifest = tile_file(LocalStorage(tmp_path / "store"), path, "half", TileParams(100, 0))
    # 3 x 3 cells of 100 px; only the four cells reaching into rows and columns 150.. hold data.
    assert manifest["skipped_empty"] == 5
    assert len(manifest["tiles"]) == 4
    partial = next(t for t in manifest["tiles"] if t["id"] == "r0001_c0001")
    assert partial["nodata_fraction"] == pytest.approx(1 - 50 * 50 / 100**2)


def test_png_without_georeferencing_tiles_in_pixel_space(tmp_path):
    path = tmp_path / "plain.png"
    data = np.random.default_rng(1).integers(0, 255, (3, 70, 90), dtype=np.uint8)
    with rasterio.open(path, "w", driver="PNG", width=90, height=70, count=3, dtype="uint8") as dst:
        dst.write(data)
    storage = LocalStorage(tmp_path / "store")
    manifest = tile_file(storage, path, "plain", TileParams(64, 0))
    assert manifest["georeferenced"] is False and manifest["crs"] is None
    last = manifest["tiles"][-1]
    assert last["window"] == [64, 64, 26, 6] and last["bounds"] == [64, 64, 90, 70]
    with storage.open_raster(last["key"]) as tile:
        np.testing.assert_array_equal(tile.read()[:, :6, :26], data[:, 64:, 64:])


def test_cli_ingests_into_a_storage_url(tmp_path):
    out = tmp_path / "cli-store"
    cmd = [
        sys.executable,
        "-m",
        "roadseg.cli",
        "ingest",
        str(SOLARIS),
        "--out",
        out.as_uri(),
        "--tile-size",
        "64",
        "--overlap",
        "16",
        "--stretch",
        "1",
        "99",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["tiles"] == len(tile_grid(SOLARIS_SIZE, SOLARIS_SIZE, 64, 16)) == 16  # origins 0, 48, 96, 144
    assert "tiling" in result.stderr and "EPSG:4326" in result.stderr
    storage = LocalStorage(out)
    manifest = json.loads(storage.read_text(f"scenes/{summary['scene_id']}/manifest.json"))
    assert manifest["overlap"] == 16 and manifest["stretch"]["percentiles"] == [1.0, 99.0]
    record = json.loads(storage.read_text(f"scenes/{summary['scene_id']}/status.json"))
    assert record["status"] == "done" and record["progress"] == {"done": 16, "total": 16}
    again = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert json.loads(again.stdout.strip().splitlines()[-1]) == summary
    assert len(storage.list(f"scenes/{summary['scene_id']}/tiles")) == 16


def test_scene_and_tiles_on_gcs(tmp_path, fake_gcs):
    storage = GCSStorage(f"ingest-{uuid.uuid4().hex[:8]}", "roadseg")
    storage.write_file("inputs/vegas.tif", VEGAS)
    manifest = tile_scene(storage, "gcs", storage, "inputs/vegas.tif", TileParams(128, 0))
    assert len(manifest["tiles"]) == 9
    assert storage.list("scenes/gcs/tiles") == sorted(t["key"] for t in manifest["tiles"])
    check_tiles_against_scene(storage, manifest, VEGAS)


def test_jp2_scene_is_tiled(tmp_path):
    data = np.random.default_rng(2).integers(0, 255, (3, 200, 300), dtype=np.uint8)
    path = tmp_path / "scene.jp2"
    with rasterio.open(
        path,
        "w",
        driver="JP2OpenJPEG",
        width=300,
        height=200,
        count=3,
        dtype="uint8",
        crs="EPSG:32611",
        transform=from_origin(600000, 4000000, 0.5, 0.5),
        QUALITY="100",
        REVERSIBLE="YES",
    ) as dst:
        dst.write(data)
    storage = LocalStorage(tmp_path / "store")
    manifest = tile_file(storage, path, "jp2", TileParams(128, 0))
    assert manifest["crs"] == "EPSG:32611" and len(manifest["tiles"]) == 6
    check_tiles_against_scene(storage, manifest, path)
    with storage.open_raster(manifest["tiles"][0]["key"]) as tile:
        np.testing.assert_array_equal(tile.read(), data[:, :128, :128])
