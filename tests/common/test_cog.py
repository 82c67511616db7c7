"""COGs with overviews made in numpy: the same levels, pixels and layout GDAL's COG driver makes itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from roadseg import cog


def write_tif(path: Path, data: np.ndarray, rows_per_strip: int | None = None) -> Path:
    """A plain single-band GeoTIFF of ``data`` (zstd, stripped, as a prediction's layers)."""
    height, width = data.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": data.dtype.name,
        "compress": "zstd",
        "crs": "EPSG:32611",
        "transform": rasterio.Affine(1, 0, 0, 0, -1, 0),
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data, 1)
    return path


def gdal_cog(src: Path, dst: Path, resampling: str) -> Path:
    """The COG GDAL's driver makes with its own overviews (what tif_to_cog did before)."""
    with rasterio.Env(**cog.GDAL_ENV):
        rasterio.shutil.copy(src, dst, driver="COG", COMPRESS="DEFLATE", OVERVIEW_RESAMPLING=resampling.upper())
    return dst


def probabilities(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.round(rng.random((height, width), dtype=np.float32) * 2**16) / 2**16).astype(np.float32)


def read_all(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def overview_levels(path: Path) -> list[np.ndarray]:
    with rasterio.open(path) as ds:
        return [ds.read(1, out_shape=(-(-ds.height // f), -(-ds.width // f))) for f in ds.overviews(1)]


@pytest.mark.parametrize(
    ("width", "height"), [(2048, 2048), (2049, 300), (3000, 3000), (700, 5000), (600, 33000), (4097, 4097)]
)
def test_as_many_overviews_as_gdal_makes(tmp_path, width, height):
    src = write_tif(tmp_path / "src.tif", np.zeros((height, width), np.uint8))
    with rasterio.open(gdal_cog(src, tmp_path / "gdal.tif", "nearest")) as ds:
        gdal_count = len(ds.overviews(1)) if max(width, height) > cog.COG_OVERVIEWS_ABOVE else 0
    factors = cog.overview_factors(width, height)
    assert factors == [2**k for k in range(1, gdal_count + 1)]


def test_probability_cog_equals_gdal_s_own_and_leaves_no_files(tmp_path):
    """4096 x 2560 (a multiple of every factor): every level within float rounding of GDAL's average."""
    data = probabilities(4096, 2560)
    src = write_tif(tmp_path / "probability.tif", data)
    out = tmp_path / "out"
    out.mkdir()
    ours = cog.tif_to_cog(src, out / "probability.cog.tif", "average", 1, 3)
    theirs = gdal_cog(src, tmp_path / "gdal.tif", "average")
    assert sorted(p.name for p in out.iterdir()) == ["probability.cog.tif"]  # the levels' files are gone
    with rasterio.open(ours) as ds, rasterio.open(theirs) as ref:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.block_shapes == [(512, 512)]
        assert ds.overviews(1) == ref.overviews(1) == [2, 4, 8]
        assert ds.crs == ref.crs and ds.transform == ref.transform
        assert np.array_equal(ds.read(1), data)
    for level, reference in zip(overview_levels(ours), overview_levels(theirs), strict=True):
        np.testing.assert_allclose(level, reference, rtol=0, atol=1e-6)


def test_mask_overviews_stay_0_255_and_odd_edges_average_what_is_there(tmp_path):
    """A 3001 x 2051 mask (odd sides; a VRT over two bands of rows, as a sharded job has, here with paths
    relative to it): nearest keeps each block's top-left pixel; probabilities at the odd last row and column
    average the pixels there."""
    mask = np.where(probabilities(2051, 3001, seed=1) > 0.7, 255, 0).astype(np.uint8)
    top, bottom = write_tif(tmp_path / "top.tif", mask[:1000]), write_tif(tmp_path / "bottom.tif", mask[1000:])
    vrt = tmp_path / "mask.vrt"
    rows = [(top, 0, 1000), (bottom, 1000, 1051)]
    sources = "".join(
        f'<SimpleSource><SourceFilename relativeToVRT="1">{path.name}</SourceFilename><SourceBand>1</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="3001" ySize="{size}"/><DstRect xOff="0" yOff="{start}" xSize="3001" '
        f'ySize="{size}"/></SimpleSource>'
        for path, start, size in rows
    )
    vrt.write_text(
        f'<VRTDataset rasterXSize="3001" rasterYSize="2051"><VRTRasterBand dataType="Byte" band="1">'
        f"{sources}</VRTRasterBand></VRTDataset>"
    )
    levels = overview_levels(cog.tif_to_cog(vrt, tmp_path / "mask.cog.tif", "nearest"))
    assert [level.shape for level in levels] == [(1026, 1501), (513, 751), (257, 376)]
    for factor, level in zip((2, 4, 8), levels, strict=True):
        assert np.array_equal(level, mask[::factor, ::factor])

    data = probabilities(2051, 3001, seed=2)
    first = overview_levels(cog.tif_to_cog(write_tif(tmp_path / "p.tif", data), tmp_path / "p.cog.tif", "average"))[0]
    np.testing.assert_allclose(first[:-1, :-1], data[:-1, :-1].reshape(1025, 2, 1500, 2).mean(axis=(1, 3)), atol=1e-6)
    np.testing.assert_allclose(first[-1, :-1], data[-1, :-1].reshape(1500, 2).mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(first[:-1, -1], data[:-1, -1].reshape(1025, 2).mean(axis=1), atol=1e-6)
    assert first[-1, -1] == data[-1, -1]


def test_levels_read_in_bands_of_rows_equal_one_read(tmp_path, monkeypatch):
    """Memory stays a band of rows: a tiny read budget (bands of 8 rows x the top factor) changes nothing."""
    data = probabilities(2500, 2100, seed=3)
    src = write_tif(tmp_path / "p.tif", data)
    whole = [read_all(p) for p in cog.write_overviews(src, [2, 4, 8], "average", tmp_path)]
    monkeypatch.setattr(cog, "OVERVIEW_READ_BYTES", 8 * 2100 * 4 * 8)
    (tmp_path / "bands").mkdir()
    banded = [read_all(p) for p in cog.write_overviews(src, [2, 4, 8], "average", tmp_path / "bands")]
    for a, b in zip(whole, banded, strict=True):
        assert np.array_equal(a, b)


def test_average_of_integer_pixels_is_refused(tmp_path):
    src = write_tif(tmp_path / "m.tif", np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="floating-point"):
        cog.write_overviews(src, [2], "average", tmp_path)
