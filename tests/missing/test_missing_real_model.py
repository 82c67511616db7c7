"""`roadseg missing` with the shipped model on the SpaceNet Vegas tile, one mapped road taken out of its vectors.

The model (``models/roads/3``) traces feature 25 of the tile's centrelines (a 315 m road, 96 % of it farther
than the tolerance from any other mapped road) along 92 % of its length within the default tolerance; taken
out of the map, it must come back as candidate missing roads.
"""

from __future__ import annotations

import json

import pytest
from roadseg.cli import main
from shapely.geometry import LineString, shape
from utils.gateway import SHIPPED

REMOVED = 25


def test_shipped_model_finds_a_road_taken_out_of_the_vegas_map(shared_dir, tmp_path, monkeypatch, capsys):
    from roadseg.config import get_settings
    from roadseg.missing.compare import default_tolerance_m
    from roadseg.missing.frame import Frame
    from roadseg.model_versions import latest_version

    if latest_version(SHIPPED) is None:
        pytest.skip("no shipped model under models/roads")
    folder = shared_dir / "data" / "spacenet-vegas"
    image = folder / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
    roads = json.loads((folder / "AOI_2_Vegas_img0_roads.geojson").read_text())
    removed = shape(roads["features"].pop(REMOVED)["geometry"])
    vectors = tmp_path / "roads_without_one.geojson"
    vectors.write_text(json.dumps(roads))
    monkeypatch.setenv("ROADSEG_STORAGE_URL", (tmp_path / "storage").as_uri())
    get_settings.cache_clear()
    try:
        out = tmp_path / "out"
        args = ["missing", str(image), "--vectors", str(vectors), "--out", str(out), "--model", str(SHIPPED / "3")]
        assert main([*args, "--tta", "none"]) == 0
        printed = capsys.readouterr().out
        assert "candidate missing roads" in printed and "/missing/" in printed
        found = json.loads((out / f"{image.stem}.missing.geojson").read_text())
        unsupported = json.loads((out / f"{image.stem}.unsupported.geojson").read_text())
        assert found["roadseg"]["crs"] == "EPSG:4326" and found["roadseg"]["model"] == "roadseg roads v3"
        assert unsupported["type"] == "FeatureCollection"
        import rasterio
        from roadseg import raster

        with rasterio.open(image) as ds:
            frame = Frame.of(raster.scene_info(ds))
        tolerance = default_tolerance_m(get_settings(), frame.pixel_size_m)
        lines = [frame.to_metric(LineString(f["geometry"]["coordinates"])) for f in found["features"]]
        target = frame.to_metric(removed.intersection(frame.footprint()))
        from shapely import union_all

        covered = target.intersection(union_all(lines).buffer(tolerance)).length / target.length
        assert covered > 0.6, f"only {covered:.0%} of the removed road came back as candidates"
        best = found["features"][0]["properties"]
        assert best["rank"] == 0 and 0 < best["score"] <= 1 and best["length_m"] >= 20

        # The job is stored for review: accept the best candidate, then export as an editor would.
        import xml.etree.ElementTree as ET

        from roadseg.missing.records import get_candidate, missing_store, set_decision
        from roadseg.storage import get_storage

        job_id = printed.rsplit("/missing/", 1)[1].split()[0]
        storage = get_storage()
        record = missing_store(storage).get(job_id)
        set_decision(storage, job_id, get_candidate(storage, record, best["id"]), "accept", "test")
        assert main(["missing", "export", job_id, "--out", str(out)]) == 0
        accepted = json.loads((out / f"{job_id}.accepted.geojson").read_text())
        assert [f["properties"]["id"] for f in accepted["features"]] == [best["id"]]
        assert accepted["features"][0]["properties"]["source"] == "roadseg roads v3"
        osc = ET.parse(out / f"{job_id}.accepted.osc").getroot()
        assert osc.tag == "osmChange" and len(osc.findall("create/way")) == 1
        assert json.loads((out / f"{job_id}.rejected.geojson").read_text())["features"] == []
    finally:
        get_settings.cache_clear()
