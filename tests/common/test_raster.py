"""roadseg.raster: validation from headers, band reduction to RGB, stretch and valid-pixel masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.windows import Window
from roadseg.errors import InvalidInput, TooLarge
from roadseg.raster import (
    Stretch,
    compute_stretch,
    image_size_ok,
    open_checked,
    open_stored,
    read_rgb_window,
    rgb_band_indexes,
    scene_info,
    to_uint8_rgb,
)
from roadseg.storage import LocalStorage
from utils.paths import DATA

#: Synthetic stand-ins in tests/data (utils.geodata): a 280 px RGBA uint8 scene, a 200 px uint16 one.
VEGAS = DATA / "spacenet-vegas" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
SOLARIS = DATA / "solaris-road-mask" / "road_mask_input.tif"


def write_tif(path: Path, data: np.ndarray, **profile) -> Path:
    """A small GeoTIFF (EPSG:32611, 0.5 m pixels) from ``data`` [C, H, W]."""
    base = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype,
        "crs": "EPSG:32611",
        "transform": from_origin(600000, 4000000, 0.5, 0.5),
    }
    with rasterio.open(path, "w", **{**base, **profile}) as dst:
        dst.write(data)
    return path


def test_uint8_rgb_alpha_passes_through():
    with open_checked(VEGAS) as ds:
        assert rgb_band_indexes(ds) == (1, 2, 3)
        stretch = compute_stretch(ds)
        assert stretch.mode == "none"
        window = Window(0, 216, 64, 64)  # the bottom-left corner, with the scene's alpha-0 triangle
        rgb, valid = read_rgb_window(ds, window, stretch)
        np.testing.assert_array_equal(rgb, np.moveaxis(ds.read((1, 2, 3), window=window), 0, -1))
        np.testing.assert_array_equal(valid, ds.read(4, window=window) > 0)
        info = scene_info(ds)
    # Alpha is 0 where row - col > 262: 1 + 2 + ... + 17 pixels of rows 263..279.
    assert int((~valid).sum()) == 153 and not valid[-1, 0] and valid[-1, 17]
    assert info.georeferenced and info.crs == "EPSG:4326"
    assert info.width == info.height == 280 and info.bands == 4
    assert info.pixel_size == pytest.approx([2.7e-06, 2.7e-06])


def test_uint16_is_stretched_to_uint8(monkeypatch):
    from roadseg import raster

    monkeypatch.setattr(raster, "STRETCH_SAMPLE_PIXELS", 100 * 100)  # the 200 px scene is read at 100 px
    with open_checked(SOLARIS) as ds:
        stretch = compute_stretch(ds, (2, 98))
        raw = ds.read(1).astype(np.float64)
        rgb, valid = read_rgb_window(ds, Window(0, 0, ds.width, ds.height), stretch)
    # The full read here is the whole scene; the stretch itself came from a read decimated 2x.
    low, high = np.percentile(raw, [2, 98])
    assert stretch.mode == "percentile"
    assert stretch.low[0] == pytest.approx(low, rel=0.02) and stretch.high[0] == pytest.approx(high, rel=0.02)
    assert rgb.dtype == np.uint8 and valid.all()
    expected = np.clip(np.round((raw - stretch.low[0]) * 255 / (stretch.high[0] - stretch.low[0])), 0, 255)
    np.testing.assert_array_equal(rgb[..., 0], expected.astype(np.uint8))
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()  # gray -> RGB
    assert (rgb == 0).mean() == pytest.approx(0.02, abs=0.01) and (rgb == 255).mean() == pytest.approx(0.02, abs=0.01)


def test_nodata_alpha_and_nan_become_the_mask(tmp_path):
    data = np.full((3, 40, 50), 1000, dtype=np.uint16)
    data[:, :10, :] = 0
    with open_checked(write_tif(tmp_path / "nodata.tif", data, nodata=0)) as ds:
        rgb, valid = read_rgb_window(ds, Window(0, 0, 50, 40), compute_stretch(ds))
    assert not valid[:10].any() and valid[10:].all() and (rgb[:10] == 0).all()

    rgba = np.full((4, 40, 50), 200, dtype=np.uint8)
    rgba[3, :, :20] = 0
    with open_checked(write_tif(tmp_path / "rgba.tif", rgba, photometric="RGB", alpha="YES")) as ds:
        assert ds.colorinterp[3] == ColorInterp.alpha
        rgb, valid = read_rgb_window(ds, Window(0, 0, 50, 40), compute_stretch(ds))
    assert not valid[:, :20].any() and valid[:, 20:].all() and (rgb[:, 20:] == 200).all()

    floats = np.linspace(0, 1, 3 * 40 * 50, dtype=np.float32).reshape(3, 40, 50)
    floats[1, 5, 5] = np.nan
    with open_checked(write_tif(tmp_path / "float.tif", floats)) as ds:
        stretch = compute_stretch(ds)
        rgb, valid = read_rgb_window(ds, Window(0, 0, 50, 40), stretch)
    assert not valid[5, 5] and valid.sum() == 40 * 50 - 1 and rgb.dtype == np.uint8


def test_multiband_uses_first_three_or_labelled_bands(tmp_path):
    data = np.stack([np.full((8, 8), v, dtype=np.uint8) for v in (10, 20, 30, 40, 50)])
    with open_checked(write_tif(tmp_path / "five.tif", data)) as ds:
        assert rgb_band_indexes(ds) == (1, 2, 3)
        rgb, _ = read_rgb_window(ds, Window(0, 0, 8, 8), compute_stretch(ds))
    assert rgb[0, 0].tolist() == [10, 20, 30]


def test_to_uint8_rgb_contract():
    bands = np.array([[[0, 50, 100]], [[0, 50, 100]], [[0, 50, 100]]], dtype=np.uint16)
    stretch = Stretch(mode="percentile", low=(0, 0, 0), high=(100, 100, 100))
    out = to_uint8_rgb(bands, np.array([[True, True, False]]), stretch)
    assert out.shape == (1, 3, 3) and out.dtype == np.uint8
    assert out[0, :, 0].tolist() == [0, 128, 0]  # invalid pixel -> 0
    assert Stretch.from_dict(stretch.to_dict()) == stretch


def test_jp2_reads_through_openjpeg(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (3, 64, 96), dtype=np.uint8)
    path = write_tif(tmp_path / "scene.jp2", data, driver="JP2OpenJPEG", QUALITY="100", REVERSIBLE="YES")
    with open_checked(path) as ds:
        assert ds.driver == "JP2OpenJPEG" and scene_info(ds).crs == "EPSG:32611"
        rgb, valid = read_rgb_window(ds, Window(0, 0, 96, 64), compute_stretch(ds))
    np.testing.assert_array_equal(rgb, np.moveaxis(data, 0, -1))
    assert valid.all()


def test_png_without_georeferencing_is_a_pixel_space_scene(tmp_path):
    data = np.zeros((3, 20, 30), dtype=np.uint8)
    path = tmp_path / "plain.png"
    with rasterio.open(path, "w", driver="PNG", width=30, height=20, count=3, dtype="uint8") as dst:
        dst.write(data)
    with open_checked(path) as ds:
        info = scene_info(ds)
    assert info.georeferenced is False and info.crs is None and info.width == 30


def test_bad_files_are_refused_with_clear_errors(tmp_path):
    good = write_tif(tmp_path / "good.tif", np.ones((3, 256, 256), dtype=np.uint8) * 7)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InvalidInput, match="corrupt or truncated"):
        open_checked(truncated)
    (tmp_path / "text.tif").write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(InvalidInput, match="not a readable image"):
        open_checked(tmp_path / "text.tif")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InvalidInput):
        open_checked(tmp_path / "empty.tif")
    vrt = tmp_path / "sneaky.vrt"
    vrt.write_text(
        f'<VRTDataset rasterXSize="256" rasterYSize="256"><VRTRasterBand dataType="Byte" band="1">'
        f"<SimpleSource><SourceFilename>{good}</SourceFilename><SourceBand>1</SourceBand>"
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    )
    with pytest.raises(InvalidInput, match="unsupported image format VRT"):
        open_checked(vrt)


def test_huge_header_is_refused_before_reading_pixels(tmp_path):
    path = tmp_path / "huge.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=100_000,
        height=100_000,
        count=3,
        dtype="uint8",
        tiled=True,
        sparse_ok=True,
        compress="deflate",
    ) as dst:
        dst.write(np.ones((3, 1, 1), dtype=np.uint8), window=Window(0, 0, 1, 1))
    assert path.stat().st_size < 10_000_000
    with pytest.raises(TooLarge, match="100000 x 100000"), open_stored(LocalStorage(tmp_path), "huge.tif"):
        pass
    assert not image_size_ok(100_000, 100_000, max_pixels=50_000**2 - 1) and image_size_ok(10, 10, max_pixels=100)
