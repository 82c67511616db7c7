"""``--pixel-size auto``: the shipped model picks a plain image's scale from its own output, on real imagery.

The Vegas tile is 0.27 m (the nearest candidate: 0.3 m) and Massachusetts 1 m; both are read here as
plain images (no georeference used), as a user's PNG or JPEG would be.
"""

from __future__ import annotations

import numpy as np
import pytest
from roadseg import raster
from roadseg.inference.predictor import EmbeddedPredictor
from roadseg.inference.scale import CANDIDATE_FACTORS, choose_factor, road_confidence
from utils.gateway import SHIPPED
from utils.paths import SHARED

VEGAS = SHARED / "data" / "spacenet-vegas" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
MASSACHUSETTS = SHARED / "data" / "massachusetts-valid" / "val" / "images" / "mass_cskanani_1.jpg"


def test_road_confidence_is_the_mean_probability_of_the_found_roads():
    p = np.array([[0.9, 0.7, 0.1], [0.0, 0.2, 0.6]], np.float32)
    assert road_confidence(p, 0.5) == pytest.approx((0.9 + 0.7 + 0.6) / 3)
    assert road_confidence(p, 0.95) == 0.0


@pytest.mark.parametrize(("image", "pixel_size_m"), [(VEGAS, 0.3), (MASSACHUSETTS, 1.0)])
def test_the_shipped_model_finds_the_scale_of_real_imagery(image, pixel_size_m):
    if not image.exists():
        pytest.skip(f"needs the real imagery {image} (../shared)")
    predictor = EmbeddedPredictor(SHIPPED)
    assert predictor.card["pixel_size_m"] == 1.0
    with raster.open_checked(image) as ds:
        choice = choose_factor(
            ds, lambda x: predictor.predict(x, "none"), predictor.threshold(), raster.compute_stretch(ds)
        )
    assert set(choice.scores) == set(CANDIDATE_FACTORS)
    assert choice.pixel_size_m(1.0) == pytest.approx(pixel_size_m, rel=0.01)


def test_roadseg_predict_pixel_size_auto_on_a_plain_copy_of_the_vegas_tile(tmp_path, capsys):
    """The user's path: a PNG of the 0.3 m tile with ``--pixel-size auto`` is predicted as with ``0.3``."""
    if not VEGAS.exists():
        pytest.skip(f"needs the real imagery {VEGAS} (../shared)")
    from PIL import Image
    from rasterio.windows import Window
    from roadseg.cli import main
    from roadseg.config import get_settings

    with raster.open_checked(VEGAS) as ds:
        stretch = raster.compute_stretch(ds, get_settings().stretch_percentiles)
        rgb, _ = raster.read_rgb_window(ds, Window(0, 0, ds.width, ds.height), stretch)
    png = tmp_path / "vegas.png"
    Image.fromarray(rgb).save(png)
    masks = {}
    for given in ("auto", "0.3", "1"):
        out = tmp_path / given
        assert main(["predict", str(png), "--out", str(out), "--pixel-size", given, "--tta", "none"]) == 0
        masks[given] = np.asarray(Image.open(out / "vegas.png")) == 255
        if given == "auto":
            printed = capsys.readouterr().out
            assert "scale chosen by the model: 0.3 m pixels" in printed, printed
    assert masks["auto"].any() and (masks["auto"] == masks["0.3"]).all()
    assert masks["1"].mean() < masks["auto"].mean() / 4  # taken as the model's own 1 m, v3 finds little

    with pytest.raises(SystemExit):  # argparse, with the API's message
        main(["predict", str(png), "--out", str(tmp_path / "bad"), "--pixel-size", "automatic"])
    assert "the pixel size must be a number of metres or 'auto'" in capsys.readouterr().err
