"""Multi-file scenes: tiles of one image joined into a VRT mosaic, then ingested and predicted as one image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.transform import from_origin
from rasterio.windows import Window
from roadseg import raster
from roadseg.cli import main
from roadseg.errors import InvalidInput
from roadseg.mosaic import build_mosaic, gcs_gdal_options, write_mosaic
from roadseg.storage import GCSStorage, LocalStorage
from utils.gateway import road_image

#: The known image: 600 x 400 px, cut into 2 x 2 tiles of 300 x 200 px.
WIDTH, HEIGHT, TILE_W, TILE_H = 600, 400, 300, 200
CRS = "EPSG:32618"
PIXEL = 0.5
ORIGIN = (583000.0, 4507000.0)
FULL_TRANSFORM = from_origin(*ORIGIN, PIXEL, PIXEL)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """``[3, H, W]`` uint8: light ground with dark roads crossing the tile seams (x = 300, y = 200)."""
    return np.ascontiguousarray(np.moveaxis(road_image(HEIGHT, WIDTH, seed=7), -1, 0))


def write_tile(path: Path, data: np.ndarray, col_off: int, row_off: int, **profile) -> Path:
    """``data`` (``[C, h, w]``) as a GeoTIFF placed at pixel (col_off, row_off) of the full image's grid."""
    options = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": CRS,
        "transform": FULL_TRANSFORM @ Affine.translation(col_off, row_off),
    }
    mask = profile.pop("mask", None)
    with rasterio.open(path, "w", **(options | profile)) as dst:
        dst.write(data)
        if mask is not None:
            dst.write_mask(mask)
    return path


def write_tiles(folder: Path, image: np.ndarray, skip: tuple[tuple[int, int], ...] = (), **profile) -> list[Path]:
    """The 2 x 2 tiles of ``image`` as ``folder/tile_<row><col>.tif`` (in row-major order)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for row in range(2):
        for col in range(2):
            if (row, col) in skip:
                continue
            part = image[:, row * TILE_H : (row + 1) * TILE_H, col * TILE_W : (col + 1) * TILE_W]
            paths.append(write_tile(folder / f"tile_{row}{col}.tif", part, col * TILE_W, row * TILE_H, **profile))
    return paths


def write_vrt(tmp_path: Path, sources: list) -> Path:
    out = tmp_path / "scene.vrt"
    write_mosaic(sources, out)
    return out


def test_tiles_mosaic_back_into_the_image(tmp_path, image):
    tiles = write_tiles(tmp_path / "tiles", image)
    mosaic = build_mosaic([str(p) for p in tiles])
    assert mosaic.summary() == {"files": 4, "width": 600, "height": 400, "crs": CRS, "pixel_size": [0.5, 0.5]}
    assert mosaic.files == tuple(str(p) for p in tiles)
    assert mosaic.xml.count("<SimpleSource>") == 4 * 3  # plain tiles: copied, no per-pixel checks
    assert all(f'relativeToVRT="0">{p}<' in mosaic.xml for p in tiles)  # absolute paths
    vrt = tmp_path / "scene.vrt"
    vrt.write_text(mosaic.xml)
    with rasterio.open(vrt) as ds:
        assert (ds.driver, ds.width, ds.height, ds.count, ds.dtypes[0]) == ("VRT", 600, 400, 3, "uint8")
        assert ds.crs == rasterio.crs.CRS.from_string(CRS) and ds.transform == FULL_TRANSFORM
        np.testing.assert_array_equal(ds.read(), image)
        seams = Window(290, 190, 20, 20)  # the four tiles meet here
        np.testing.assert_array_equal(ds.read(window=seams), image[:, 190:210, 290:310])
        assert (ds.dataset_mask() == 255).all()
        with rasterio.open(tiles[0]) as tile:
            assert ds.colorinterp == tile.colorinterp


def test_a_folder_is_its_tiles_sorted(tmp_path, image):
    folder = tmp_path / "tiles"
    tiles = write_tiles(folder, image)
    os.replace(tiles[3], folder / "TILE_11.TIF")  # suffixes in any case
    (folder / "notes.txt").write_text("not a tile")
    (folder / "sub").mkdir()
    expected = sorted([str(p) for p in tiles[:3]] + [str(folder / "TILE_11.TIF")])
    for source in (folder, folder.as_uri()):
        mosaic = write_mosaic([source], tmp_path / "out" / "scene.vrt")
        assert list(mosaic.files) == expected
        assert (tmp_path / "out" / "scene.vrt").read_text() == mosaic.xml
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["scene.vrt"]  # no temporary file left
    with rasterio.open(tmp_path / "out" / "scene.vrt") as ds:
        np.testing.assert_array_equal(ds.read(), image)

    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="empty: the folder has no .tif/.tiff/.jp2/.j2k files"):
        build_mosaic([tmp_path / "empty"])
    with pytest.raises(InvalidInput, match="tile_00.tif: listed more than once"):
        build_mosaic([tiles[0], tiles[0].as_uri()])
    with pytest.raises(InvalidInput, match="is a folder: --out names the VRT file"):
        write_mosaic([folder], tmp_path / "out")


BAD_TILES = {
    "crs": ({"crs": "EPSG:32617"}, "CRS EPSG:32617 differs from EPSG:32618 of"),
    "bands": ({"bands": 4}, r"4 band\(s\), but .*tile_00.tif has 3"),
    "dtype": ({"dtype": "uint16"}, "data type uint16 differs from uint8 of"),
    "pixel size": ({"pixel": 0.5001}, "pixel size 0.5001 x 0.5001 differs from 0.5 x 0.5 of"),
    "rotated": ({"transform": Affine(0.5, 0.1, ORIGIN[0], 0.0, -0.5, ORIGIN[1])}, "is not north-up"),
    "south-up": ({"transform": Affine(0.5, 0.0, ORIGIN[0], 0.0, 0.5, ORIGIN[1])}, "is not north-up"),
    "no crs": ({"crs": None}, "not georeferenced"),
    "not an image": ({"garbage": True}, "not a readable image"),
}


@pytest.mark.parametrize("case", BAD_TILES)
def test_a_file_that_does_not_fit_is_named_with_what_differs(tmp_path, image, case):
    change, message = BAD_TILES[case]
    tiles = write_tiles(tmp_path / "tiles", image, skip=((1, 1),))
    bad = tmp_path / "tiles" / "tile_11.tif"
    data = image[:, 200:, 300:]
    profile: dict = {}
    if "bands" in change:
        data = np.concatenate([data, data[:1]])
    if "dtype" in change:
        data = data.astype(np.uint16)
    if "crs" in change:
        profile["crs"] = change["crs"]
    if "pixel" in change:
        profile["transform"] = from_origin(ORIGIN[0] + 150, ORIGIN[1] - 100, change["pixel"], change["pixel"])
    if "transform" in change:
        profile["transform"] = change["transform"]
    if "garbage" in change:
        bad.write_bytes(b"II*\x00 truncated")
    else:
        write_tile(bad, data, 300, 200, **profile)
    with pytest.raises(InvalidInput, match=message) as caught:
        build_mosaic([*tiles, bad])
    assert str(caught.value).startswith(f"{bad}: ")  # the offending file comes first


def test_pixel_sizes_within_the_tolerance_are_one_grid(tmp_path, image):
    tiles = write_tiles(tmp_path / "tiles", image, skip=((1, 1),))
    bad = write_tile(
        tmp_path / "tiles" / "tile_11.tif",
        image[:, 200:, 300:],
        0,
        0,
        transform=from_origin(ORIGIN[0] + 150, ORIGIN[1] - 100, PIXEL * (1 + 1e-7), PIXEL * (1 + 1e-7)),
    )
    with rasterio.open(write_vrt(tmp_path, [*tiles, bad])) as ds:
        assert (ds.width, ds.height) == (600, 400)
        np.testing.assert_array_equal(ds.read(), image)


@pytest.mark.parametrize("invalid", ["nodata", "internal mask", "alpha"])
def test_invalid_pixels_never_paint_over_a_neighbour(tmp_path, image, invalid):
    """Two overlapping strips: the later one is invalid where it overlaps the first, which must show through."""
    left, right = image[:, :, :350].copy(), image[:, :, 250:].copy()
    right_valid = np.full((HEIGHT, 350), 255, np.uint8)
    right_valid[:, :100] = 0  # columns 250..349 of the image: covered by the left strip
    profile_a: dict = {}
    profile_b: dict = {}
    if invalid == "nodata":  # the image has no 0 pixel: 0 can be nodata
        right[:, right_valid == 0] = 0
        profile_a = profile_b = {"nodata": 0}
    elif invalid == "internal mask":
        right[:, right_valid == 0] = 99  # garbage under the mask
        profile_a, profile_b = {"mask": np.full((HEIGHT, 350), 255, np.uint8)}, {"mask": right_valid}
    else:
        right[:, right_valid == 0] = 99
        left = np.concatenate([left, np.full((1, HEIGHT, 350), 255, np.uint8)])
        right = np.concatenate([right, right_valid[None]])
        profile_a = profile_b = {"photometric": "RGB", "alpha": "YES"}
    assert image.min() > 0
    a = write_tile(tmp_path / "a.tif", left, 0, 0, **profile_a)
    b = write_tile(tmp_path / "b.tif", right, 250, 0, **profile_b)
    mosaic = build_mosaic([a, b])
    assert mosaic.width == 600
    with rasterio.open(write_vrt(tmp_path, [a, b])) as ds:
        expected = np.concatenate([left[:3, :, :250], left[:3, :, 250:], right[:3, :, 100:]], axis=2)
        np.testing.assert_array_equal(ds.read([1, 2, 3]), expected)
        assert (ds.dataset_mask() == 255).all()
        if invalid == "nodata":
            assert ds.nodata == 0 and "<NoDataValue>0.0</NoDataValue>" in mosaic.xml
        if invalid == "alpha":
            assert ds.count == 4 and ds.colorinterp[3] == rasterio.enums.ColorInterp.alpha


@pytest.mark.parametrize("invalid", ["none", "nodata", "internal mask"])
def test_gaps_between_files_and_masked_pixels_are_invalid(tmp_path, image, invalid):
    """Three tiles of four: the missing quadrant reads as invalid, and so do the tiles' own invalid pixels."""
    expected_mask = np.full((HEIGHT, WIDTH), 255, np.uint8)
    expected_mask[200:, 300:] = 0
    data = image.copy()
    profile: dict = {}
    if invalid == "nodata":
        data[:, 20:40, 100:500] = 0
        expected_mask[(data == 0).all(axis=0)] = 0
        profile = {"nodata": 0}
    if invalid == "internal mask":
        tile_mask = np.full((TILE_H, TILE_W), 255, np.uint8)
        tile_mask[50:60, :] = 0
        profile = {"mask": tile_mask}
        expected_mask[50:60, :] = 0
        expected_mask[250:260, :300] = 0
    tiles = write_tiles(tmp_path / "tiles", data, skip=((1, 1),), **profile)
    with rasterio.open(write_vrt(tmp_path, tiles)) as ds:
        assert (ds.width, ds.height) == (600, 400)
        np.testing.assert_array_equal(ds.dataset_mask(), expected_mask)
        pixels = ds.read()
        np.testing.assert_array_equal(pixels[:, expected_mask > 0], data[:, expected_mask > 0])
        assert not pixels[:, 200:, 300:].any()


def test_a_vrt_is_an_image_only_inside_trusted_mosaics(tmp_path, image):
    """A VRT names files for GDAL to read: refused as an upload or API URI, accepted on the command line."""
    vrt = write_vrt(tmp_path, write_tiles(tmp_path / "tiles", image))
    with pytest.raises(InvalidInput, match="unsupported image format VRT"):
        raster.open_checked(vrt)
    with (
        pytest.raises(InvalidInput, match="unsupported image format VRT"),
        raster.open_stored(LocalStorage(tmp_path), "scene.vrt"),
    ):
        pass
    with raster.trusted_mosaics(), raster.open_checked(vrt) as ds:
        assert raster.scene_info(ds).driver == "VRT"
    with pytest.raises(InvalidInput, match="unsupported image format VRT"):
        raster.open_checked(vrt)  # the trust ended with the block


def check_tiles_against_image(storage: LocalStorage | GCSStorage, summary: dict, image: np.ndarray) -> int:
    """Every tile of an ingested 8-bit scene holds exactly the image's pixels at its window; returns the count."""
    manifest = json.loads(storage.read_text(f"scenes/{summary['scene_id']}/manifest.json"))
    assert (manifest["width"], manifest["height"], manifest["crs"]) == (WIDTH, HEIGHT, CRS)
    assert manifest["transform"] == list(FULL_TRANSFORM)[:6]
    for entry in manifest["tiles"]:
        col_off, row_off, width, height = entry["window"]
        with storage.open_raster(entry["key"]) as tile:
            assert tile.transform == FULL_TRANSFORM @ Affine.translation(col_off, row_off)
            np.testing.assert_array_equal(
                tile.read()[:, :height, :width], image[:, row_off : row_off + height, col_off : col_off + width]
            )
            assert (tile.dataset_mask()[:height, :width] == 255).all()
    return len(manifest["tiles"])


def test_cli_builds_the_mosaic_and_ingests_it_like_a_scene(tmp_path, image, capsys):
    write_tiles(tmp_path / "tiles", image)
    vrt = tmp_path / "scene.vrt"
    made = subprocess.run(
        [sys.executable, "-m", "roadseg.cli", "ingest", "mosaic", str(tmp_path / "tiles"), "--out", str(vrt)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) == {
        "mosaic": str(vrt),
        "files": 4,
        "width": 600,
        "height": 400,
        "crs": CRS,
        "pixel_size": [0.5, 0.5],
    }
    store = tmp_path / "store"
    assert main(["ingest", "scene", str(vrt), "--out", store.as_uri(), "--tile-size", "256"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["tiles"] == 6 and summary["skipped_empty"] == 0
    assert check_tiles_against_image(LocalStorage(store), summary, image) == 6
    assert main(["ingest", str(vrt), "--out", store.as_uri(), "--tile-size", "256"]) == 0  # the same scene
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary

    assert main(["ingest", "mosaic", str(tmp_path / "tiles")]) == 2
    assert "mosaic needs --out MOSAIC.vrt" in capsys.readouterr().err
    assert main(["ingest", str(vrt), str(vrt), "--out", store.as_uri()]) == 2
    assert "one SCENE at a time" in capsys.readouterr().err


def test_gs_tiles_are_read_by_gdal_from_the_emulator(tmp_path, image, fake_gcs, capsys, monkeypatch):
    """/vsigs/ against fake-gcs-server: header checks, VRT reads and an ingest of the VRT."""
    options = gcs_gdal_options()
    assert options["CPL_GS_ENDPOINT"] == fake_gcs + "/" and options["GS_NO_SIGN_REQUEST"] == "YES"
    bucket = f"mosaic-{uuid.uuid4().hex[:8]}"
    tiles_store = GCSStorage(bucket, "nyc")
    uris = []
    for path in write_tiles(tmp_path / "tiles", image):
        tiles_store.write_file(f"tiles/{path.name}", path)
        uris.append(tiles_store.url_for(f"tiles/{path.name}"))
    vrt = tmp_path / "nyc.vrt"
    assert main(["ingest", "mosaic", *uris, "--out", str(vrt)]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 4
    assert f"/vsigs/{bucket}/nyc/tiles/tile_00.tif" in vrt.read_text()
    with rasterio.Env(**options), rasterio.open(vrt) as ds:
        np.testing.assert_array_equal(ds.read(), image)
    store = tmp_path / "store"
    assert main(["ingest", str(vrt), "--out", store.as_uri(), "--tile-size", "256"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert check_tiles_against_image(LocalStorage(store), summary, image) == 6

    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    assert gcs_gdal_options() == {}  # real GCS: GDAL's defaults and its own credentials


def test_predict_takes_the_mosaic_as_one_image(tmp_path, image, capsys):
    from utils.gateway import dark_model, write_geotiff

    vrt = write_vrt(tmp_path, write_tiles(tmp_path / "tiles", image))
    whole = write_geotiff(tmp_path / "whole.tif", np.moveaxis(image, 0, -1), CRS, tuple(FULL_TRANSFORM)[:6])
    out = tmp_path / "out"
    code = main(["predict", str(vrt), str(whole), "--out", str(out), "--model", str(dark_model()), "--tta", "none"])
    assert code == 0, capsys.readouterr().err
    assert {p.name for p in out.iterdir()} == {"scene.png", "scene.tif", "whole.png", "whole.tif"}
    with rasterio.open(out / "scene.tif") as cog, rasterio.open(out / "whole.tif") as whole_cog:
        assert (cog.crs, cog.transform, cog.shape) == (whole_cog.crs, FULL_TRANSFORM, (400, 600))
        # 600 px: no overviews (tif_to_cog makes them above 2048 px; tests/gateway/test_predict_cli.py checks those).
        assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and cog.overviews(1) == []
        roads = cog.read(1)
        np.testing.assert_array_equal(roads, whole_cog.read(1))
    assert (roads[63:69, 250:350] == 255).all() and (roads[100:140, 250:350] == 0).all()  # across the seam


def test_jp2_tiles_mosaic_losslessly(tmp_path, image):
    folder = tmp_path / "jp2"
    folder.mkdir()
    for path in write_tiles(tmp_path / "tif", image):
        with rasterio.open(path) as src:
            rasterio.shutil.copy(src, folder / f"{path.stem}.jp2", driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE=True)
    with rasterio.open(write_vrt(tmp_path, [folder])) as ds:
        assert (ds.width, ds.height, ds.crs) == (600, 400, rasterio.crs.CRS.from_string(CRS))
        np.testing.assert_array_equal(ds.read(), image)


def test_the_ingest_api_takes_a_gcs_folder_of_tiles_as_one_scene(
    tmp_path, image, fake_gcs, settings_env, start_worker, monkeypatch
):
    """A folder of gs:// tiles submitted to the API: checked, joined by the service, tiled by a worker in shards."""
    import time

    from roadseg.celery_app import app as celery_app
    from roadseg.config import get_settings
    from roadseg.ingest.api import create_app
    from roadseg.storage import get_storage
    from utils.clients import local_client

    bucket = f"tiles-{uuid.uuid4().hex[:8]}"
    env = {
        **settings_env,
        "STORAGE_EMULATOR_HOST": fake_gcs,
        "ROADSEG_INGEST_GS_BUCKETS": json.dumps([bucket]),
        "ROADSEG_INGEST_FILE_ROOTS": json.dumps([str(tmp_path / "allowed")]),
        "ROADSEG_SHARD_TILES": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    monkeypatch.setattr(celery_app.conf, "broker_url", env["ROADSEG_REDIS_URL"])
    tiles_store = GCSStorage(bucket, "nyc")
    for path in write_tiles(tmp_path / "tiles", image):
        tiles_store.write_file(f"tiles/{path.name}", path)
    tiles_store.write_text("tiles/README.txt", "not a tile")  # ignored: not a .tif/.jp2
    start_worker("ingest", env)
    client = local_client(create_app())

    response = client.post("/api/v1/scenes", json={"uri": f"gs://{bucket}/nyc/tiles/", "tile_size": 256})
    assert response.status_code == 202, response.text
    scene_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while (record := client.get(f"/api/v1/scenes/{scene_id}").json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, record
        time.sleep(0.1)
    assert record["status"] == "done", record
    assert record["mosaic_files"] == 4 and record["shards"] == {"count": 3, "per_shard": 2}
    assert (record["width"], record["height"], record["driver"]) == (WIDTH, HEIGHT, "VRT")
    storage = get_storage()
    assert check_tiles_against_image(storage, {"scene_id": scene_id}, image) == 6
    # The same tiles, listed one by one, are the same scene.
    uris = [f"gs://{bucket}/nyc/tiles/tile_{rc}.tif" for rc in ("00", "01", "10", "11")]
    again = client.post("/api/v1/scenes", json={"uris": uris, "tile_size": 256})
    assert again.status_code == 202 and again.json()["id"] == scene_id

    # Every tile passes the allow-lists; a tile that does not fit is named; nothing is kept of a refusal.
    outside = write_tiles(tmp_path / "outside", image)[0].as_uri()
    refused = client.post("/api/v1/scenes", json={"uris": [uris[0], outside]})
    assert refused.status_code == 400 and "ingest_file_roots" in refused.json()["detail"]
    fine = write_tiles(tmp_path / "allowed", image)[0]
    odd = write_tile(tmp_path / "allowed" / "odd.tif", image[:, :200, :300], 0, 0, crs="EPSG:32617")
    before = set(storage.list("scenes"))
    mismatch = client.post("/api/v1/scenes", json={"uris": [fine.as_uri(), odd.as_uri()]})
    assert mismatch.status_code == 400 and "odd.tif" in mismatch.json()["detail"], mismatch.text
    assert set(storage.list("scenes")) == before
    # A VRT uploaded by a user is still not an image.
    vrt = write_vrt(tmp_path / "allowed", write_tiles(tmp_path / "allowed" / "more", image))
    with open(vrt, "rb") as fh:
        upload = client.post("/api/v1/scenes", files={"file": ("scene.vrt", fh)})
    assert upload.status_code == 400 and "VRT" in upload.json()["detail"]
