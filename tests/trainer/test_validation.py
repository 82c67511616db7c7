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


def test_the_shipping_rule():
    """Issue 27's rule: the val mean improves, no source more than 0.01 below the old version, at most 25 MB."""
    from roadseg.trainer.validation import ship_verdict, verdict_table

    old = {"iou": {"a": 0.50, "b": 0.40}, "mean": 0.45, "apls": {"vegas": 0.1}}
    better = {"iou": {"a": 0.495, "b": 0.42}, "mean": 0.4575, "apls": {"vegas": 0.2}}
    verdict = ship_verdict(better, old, size_mb=20.0)
    assert verdict["ships"] and verdict["reasons"] == []
    assert verdict["sources"]["a"]["change"] == pytest.approx(-0.005)
    assert "ships: the val mean improves" in verdict_table(verdict)
    assert "| vegas APLS | 0.2000 | 0.1000 | +0.1000 |" in verdict_table(verdict)

    worse_on_a = {"iou": {"a": 0.48, "b": 0.46}, "mean": 0.47, "apls": {}}
    verdict = ship_verdict(worse_on_a, old, size_mb=30.0)
    assert not verdict["ships"]
    assert verdict["reasons"] == ["a: 0.480 is 0.020 below 0.500 (at most 0.01)", "30.0 MB is over 25 MB"]
    assert "does not ship: a: 0.480" in verdict_table(verdict)

    missing_b = {"iou": {"a": 0.6}, "mean": 0.6, "apls": {}}
    assert ship_verdict(missing_b, old, 1.0)["reasons"] == ["b was not measured for the new version"]


def test_against_needs_a_version(capsys):
    from roadseg.cli import main

    assert main(["validate", "run", "--against", "models/roads/3"]) == 2
    assert "--against compares an exported version: give it with --model VERSION_DIR" in capsys.readouterr().err
