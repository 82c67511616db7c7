"""`roadseg validate`: APLS at the thresholds chosen on val (a wrong choice spoils it silently), and its options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from utils.gateway import dark_two_output_model, write_geotiff

UTM = "EPSG:32611"
ORIGIN = (500000.0, 4000000.0)  # upper-left corner, metres
PIXEL_M = 0.5


def _crossroads(tmp_path: Path) -> tuple[Path, Path]:
    """A 400 px GeoTIFF (0.5 m) with two grey 8 m roads crossing in the middle, and their centrelines."""
    from pyproj import Transformer

    rgb = np.full((400, 400, 3), 200, np.uint8)
    rgb[192:208, :] = 64
    rgb[:, 192:208] = 64
    transform = (PIXEL_M, 0.0, ORIGIN[0], 0.0, -PIXEL_M, ORIGIN[1])
    tile = write_geotiff(tmp_path / "tile.tif", rgb, crs=UTM, transform=transform)
    to_wgs84 = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    middle = 200 * PIXEL_M

    def line(points: list[tuple[float, float]]) -> dict:
        coords = [to_wgs84.transform(ORIGIN[0] + x, ORIGIN[1] - y) for x, y in points]
        return {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": coords}}

    lines = {
        "type": "FeatureCollection",
        "features": [
            line([(5, middle), (middle, middle), (195, middle)]),
            line([(middle, 5), (middle, middle), (middle, 195)]),
        ],
    }
    path = tmp_path / "roads.geojson"
    path.write_text(json.dumps(lines))
    return tile, path


def test_apls_uses_the_thresholds_chosen_on_val(tmp_path):
    """A run's checkpoint has no thresholds of its own; its APLS must be traced at the ones `measure` chose.

    The test model's centreline band on the grey road is ~0.88: a card asking for 0.95 finds no network
    (APLS 0), the val-chosen 0.5 finds the crossroads.
    """
    from roadseg.trainer.validation import vegas_apls

    tile, lines = _crossroads(tmp_path)
    model = tmp_path / "model" / "1"
    shutil.copytree(dark_two_output_model() / "1", model)
    card = json.loads((model / "model_card.json").read_text())
    card["thresholds"] = {"surface": 0.999, "band": 0.95}
    (model / "model_card.json").write_text(json.dumps(card))

    assert vegas_apls(model, tile, lines) == 0.0
    chosen = vegas_apls(model, tile, lines, thresholds={"surface": 0.5, "band": 0.5})
    assert chosen > 0.8, chosen


def test_a_number_of_checkpoints_below_one_is_refused(capsys):
    from roadseg.cli import main

    for command in (["validate", "run"], ["export", "--checkpoint", "c.keras", "--model-dir", "m"]):
        for bad in ("0", "-2", "two"):
            with pytest.raises(SystemExit) as exit_:
                main([*command, "--average", bad])
            assert exit_.value.code == 2
            assert f"a number of checkpoints (1 or more) is needed, got {bad!r}" in capsys.readouterr().err


def test_export_takes_one_pixel_size(capsys):
    from roadseg.cli import main

    command = ["export", "--checkpoint", "c.keras", "--model-dir", "m", "--pixel-size-m", "1", "--predict-at", "0.75"]
    assert main(command) == 2
    assert "--predict-at sets the card's pixel size: leave out --pixel-size-m" in capsys.readouterr().err
