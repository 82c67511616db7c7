"""Resolution matching: georeferenced images are resampled to the model card's pixel size.

The shipped model was trained on ~1 m/px imagery; on the 0.27 m/px SpaceNet Vegas tile at its native
resolution it finds almost no road, and resampled to 1 m it finds the streets (checked against the
tile's SpaceNet centerlines buffered by lane_number x 3.7 m).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from roadseg import raster
from roadseg.inference.windows import FACTOR_RANGE, model_resolution, resampled, resolution_factor
from roadseg.model_versions import latest_version
from utils.paths import DATA, REPO

VEGAS = "data/spacenet-vegas/RGB-PanSharpen_AOI_2_Vegas_img0.tif"
ROADS = "data/spacenet-vegas/AOI_2_Vegas_img0_roads.geojson"
#: Its synthetic stand-in in tests/data: the real tile's corner and 2.7e-6 degree pixels, 280 px.
VEGAS_STANDIN = DATA / "spacenet-vegas" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"


def test_ground_pixel_size_of_a_geographic_scene_matches_geodesic_distances():
    with rasterio.open(VEGAS_STANDIN) as ds:
        size = raster.ground_pixel_size_m(ds)
        left, bottom, right, top = ds.bounds
        lon, lat = (left + right) / 2, (bottom + top) / 2
        geod = Geod(ellps="WGS84")
        dx = geod.inv(lon, lat, lon + ds.transform.a, lat)[2]
        dy = geod.inv(lon, lat, lon, lat + abs(ds.transform.e))[2]
    assert size == pytest.approx((dx + dy) / 2, rel=0.005)
    # 0.300 m north-south and 0.242 m east-west at 36.24 degrees north (WGS84)
    assert dy == pytest.approx(0.2997, abs=5e-4) and dx == pytest.approx(0.2425, abs=5e-4)


# EPSG:2263 is in US survey feet (1200/3937 m).
@pytest.mark.parametrize(("epsg", "pixel", "metres"), [(32611, 0.5, 0.5), (2263, 2.0, 2 * 1200 / 3937)])
def test_ground_pixel_size_of_projected_scenes_uses_the_crs_unit(epsg, pixel, metres):
    profile = {
        "driver": "GTiff",
        "width": 8,
        "height": 8,
        "count": 1,
        "dtype": "uint8",
        "crs": CRS.from_epsg(epsg),
        "transform": from_origin(1000, 2000, pixel, pixel),
    }
    with MemoryFile() as memory, memory.open(**profile) as ds:
        assert raster.ground_pixel_size_m(ds) == pytest.approx(metres, rel=1e-6)
    with MemoryFile() as memory, memory.open(**{**profile, "crs": None, "transform": from_origin(0, 0, 1, 1)}) as ds:
        assert raster.ground_pixel_size_m(ds) is None


def test_models_trained_across_resolutions_resample_only_outside_their_range():
    card = {"pixel_size_m": 1.0, "pixel_size_range_m": [0.3, 1.5]}
    assert model_resolution(0.5, card) is None and model_resolution(1.5, card) is None
    assert model_resolution(0.1, card) == 0.3 and model_resolution(4.0, card) == 1.5
    assert model_resolution(None, card) is None
    assert model_resolution(0.5, {"pixel_size_m": 1.0}) == 1.0  # one-resolution model: always its own
    assert resolution_factor(0.1, model_resolution(0.1, card)) == pytest.approx(3.0)


def test_resolution_factor_only_acts_on_clear_differences():
    assert resolution_factor(0.27, 1.0) == pytest.approx(1.0 / 0.27)
    assert resolution_factor(0.9, 1.0) == 1.0  # within the training scale jitter
    assert resolution_factor(None, 1.0) == 1.0 and resolution_factor(0.3, None) == 1.0
    assert resolution_factor(0.01, 1.0) == FACTOR_RANGE[1]
    assert resolution_factor(10.0, 1.0) == FACTOR_RANGE[0]


def test_resampled_predictions_keep_the_window_grid():
    """A per-pixel 'model' (brightness) through a 4x shrink: same grid back, values of a smooth ramp kept."""
    ramp = np.tile(np.linspace(0, 255, 96, dtype=np.float32), (64, 1))
    images = np.repeat(ramp[None, :, :, None], 3, axis=-1).astype(np.uint8)
    images = np.concatenate([images, 255 - images])
    seen = []

    def brightness(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        mean = batch.mean(axis=-1).astype(np.float32) / 255.0
        return np.stack([mean, 1.0 - mean], axis=-1)  # two outputs: each comes back on the window's grid

    out = resampled(brightness, 4.0)(images)
    assert seen == [(2, 16, 24, 3)]
    assert out.shape == (2, 64, 96, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 4:-4, 0], images[:, :, 4:-4, 0] / 255.0, atol=0.02)
    np.testing.assert_allclose(out[:, :, 4:-4, 1], 1.0 - images[:, :, 4:-4, 0] / 255.0, atol=0.02)


@pytest.mark.skipif(latest_version(REPO / "models" / "roads") is None, reason="no shipped model")
def test_shipped_model_finds_vegas_streets_once_resampled(shared_dir):
    import geopandas as gpd
    from roadseg.config import get_settings
    from roadseg.inference.predict import predict_raster
    from roadseg.inference.predictor import EmbeddedPredictor
    from roadseg.labeler.rasterize import TileGrid, burn, centerline_shapes
    from roadseg.labeler.widths import WidthSpec

    predictor = EmbeddedPredictor(REPO / "models" / "roads")
    assert predictor.card["pixel_size_m"] == 1.0
    with rasterio.open(shared_dir / VEGAS) as ds, tempfile.TemporaryDirectory() as tmp:
        grid = TileGrid.from_dataset(ds)
        lanes = WidthSpec(width_attr="lane_number", lane_width=3.7)
        truth = burn(centerline_shapes(gpd.read_file(shared_dir / ROADS), lanes, grid), grid) == 255
        result = predict_raster(ds, predictor, Path(tmp), get_settings(), predictor.threshold())
        with rasterio.open(result.files["mask"]) as mask:
            road = mask.read(1) == 255
            assert (mask.crs, mask.transform) == (ds.crs, ds.transform)
    assert result.resampling["factor"] == pytest.approx(1.0 / result.resampling["image_pixel_size_m"], rel=1e-3)
    road, truth = road[:1200], truth[:1200]  # the bottom rows are the imagery's watermark strip
    iou = (road & truth).sum() / (road | truth).sum()
    assert 0.03 < road.mean() < 0.3
    assert iou > 0.2, f"road IoU {iou:.3f} against the lane-width SpaceNet labels"
