"""The comparison, records, exports and correction dataset on a synthetic scene, driven by a synthetic
probability raster (no model): coordinates, lengths, probabilities and file contents are asserted.

Scene (tests/utils/missing.py): 512 px at 0.5 m; painted roads north (row 100), south (row 330) and central
(column 256); the map has north, central and a phantom road (column 440) and lacks south. Default
tolerance: half the 7 m band + 6 px = 6.5 m.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from roadseg import raster
from roadseg.config import get_settings
from roadseg.errors import InvalidInput
from roadseg.missing.export import candidates_geojson, decided, osm_change
from roadseg.missing.records import (
    MISSING,
    UNSUPPORTED,
    all_candidates,
    bulk_reject,
    get_candidate,
    read_page,
    review_progress,
    set_decision,
)
from roadseg.missing.run import prepare_job, run_comparison
from roadseg.storage import LocalStorage
from utils.missing import ORIGIN, PIXEL, SIZE, write_far_vectors, write_probabilities, write_scene, write_vectors

SOUTH_Y = ORIGIN[1] - 330 * PIXEL
PHANTOM_X = ORIGIN[0] + 440 * PIXEL
CENTRAL_X = ORIGIN[0] + 256 * PIXEL
#: The default tolerance at 0.5 m pixels: half the 7 m centreline band plus 6 px.
TOLERANCE = 7.0 / 2 + 6 * PIXEL
MODEL = {"backend": "test", "model_name": "roads", "model_version": 7}


@pytest.fixture
def scene(tmp_path):
    return write_scene(tmp_path), write_probabilities(tmp_path / "probability.tif")


def _job(storage, image: Path, vectors: Path, probabilities: Path, **options):
    settings = get_settings()
    with rasterio.open(image) as ds:
        info = raster.scene_info(ds)
    record = prepare_job(
        storage, settings, info, vectors, input_name=image.name, image_url=image.resolve().as_uri(), **options
    )
    with rasterio.open(probabilities) as prob:
        return run_comparison(storage, record.id, prob, settings, 0.5, MODEL)


def test_missing_road_found_where_the_map_lacks_it(tmp_path, scene):
    image, probabilities = scene
    storage = LocalStorage(tmp_path / "storage")
    record = _job(storage, image, write_vectors(tmp_path / "roads.geojson"), probabilities)
    assert record.status == "done" and record.tolerance_m == 6.5
    missing = list(all_candidates(storage, record, MISSING))
    # The south road, cut where it crosses the mapped central road and the phantom road (6.5 m either side).
    assert len(missing) == 3
    for candidate in missing:
        ys = [y for _, y in candidate.coordinates]
        assert max(abs(y - SOUTH_Y) for y in ys) < 1.0  # on the south road's centreline (0.5 m pixels)
        assert candidate.mean_probability == pytest.approx(0.9, abs=0.01)
        assert candidate.connected  # its ends meet mapped roads
        lon, lat = candidate.coordinates_wgs84[0]
        assert -117.01 < lon < -116.99 and 36.14 < lat < 36.15  # EPSG:32611 -> EPSG:4326
    spans = sorted((min(x for x, _ in c.coordinates), max(x for x, _ in c.coordinates)) for c in missing)
    assert spans[0][1] == pytest.approx(CENTRAL_X - TOLERANCE, abs=1.0)
    assert spans[1][0] == pytest.approx(CENTRAL_X + TOLERANCE, abs=1.0)
    assert spans[1][1] == pytest.approx(PHANTOM_X - TOLERANCE, abs=1.0)
    assert sum(c.length_m for c in missing) == pytest.approx(SIZE * PIXEL - 4 * TOLERANCE, abs=6.0)
    assert [c.rank for c in missing] == [0, 1, 2] and missing[0].score >= missing[1].score >= missing[2].score
    assert missing[0].length_m == max(c.length_m for c in missing)  # same confidence: the longest first

    unsupported = list(all_candidates(storage, record, UNSUPPORTED))
    assert unsupported and all(abs(c.coordinates[0][0] - PHANTOM_X) < 0.01 for c in unsupported)
    assert all(c.mean_probability == pytest.approx(0.02, abs=0.01) for c in unsupported)
    assert sum(c.length_m for c in unsupported) == pytest.approx(SIZE * PIXEL - 4 * TOLERANCE, abs=6.0)

    collection = json.loads(storage.read_text(f"missing/{record.id}/missing.geojson"))
    assert collection["roadseg"]["crs"] == "EPSG:4326" and collection["roadseg"]["scene_crs"] == "EPSG:32611"
    assert collection["features"][0]["geometry"]["coordinates"] == missing[0].coordinates_wgs84


def test_vectors_in_another_crs_osm_pbf_and_zipped_shapefile_give_the_same_candidates(tmp_path, scene):
    osmium = pytest.importorskip("osmium")
    from pyproj import Transformer
    from utils.missing import road_line

    image, probabilities = scene
    storage = LocalStorage(tmp_path / "storage")
    base = _job(storage, image, write_vectors(tmp_path / "a.geojson"), probabilities)
    mercator = _job(storage, image, write_vectors(tmp_path / "b.geojson", crs="EPSG:3857"), probabilities)

    pbf = tmp_path / "roads.osm.pbf"
    to_lonlat = Transformer.from_crs("EPSG:32611", "EPSG:4326", always_xy=True)
    writer = osmium.SimpleWriter(str(pbf))
    node = 1
    ways = []
    for way, name in enumerate(("north", "central", "phantom"), 100):
        refs = []
        for x, y in road_line(name):
            writer.add_node(osmium.osm.mutable.Node(id=node, location=to_lonlat.transform(x, y), version=1))
            refs.append(node)
            node += 1
        ways.append(osmium.osm.mutable.Way(id=way, nodes=refs, tags={"highway": "residential"}, version=1))
    ways.append(osmium.osm.mutable.Way(id=200, nodes=[1, 4], tags={"waterway": "river"}, version=1))  # not a road
    for way in ways:
        writer.add_way(way)
    writer.close()
    osm = _job(storage, image, pbf, probabilities)
    assert osm.existing["lines"] == 3

    import zipfile

    import geopandas as gpd

    gpd.read_file(tmp_path / "b.geojson").to_file(tmp_path / "roads.shp")  # EPSG:3857 with its .prj
    with zipfile.ZipFile(tmp_path / "roads.zip", "w") as archive:
        for part in ("shp", "shx", "dbf", "prj"):
            archive.write(tmp_path / f"roads.{part}", f"roads.{part}")
    shapefile = _job(storage, image, tmp_path / "roads.zip", probabilities)
    runs = (base, mercator, osm, shapefile)
    lengths = [[c.length_m for c in all_candidates(storage, r, MISSING)] for r in runs]
    assert lengths[1] == pytest.approx(lengths[0], abs=0.5)
    assert lengths[2] == pytest.approx(lengths[0], abs=0.5)
    assert lengths[3] == pytest.approx(lengths[0], abs=0.5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"{not json", "cannot read"),
        (json.dumps({"type": "FeatureCollection", "features": []}).encode(), "no features"),
    ],
)
def test_bad_vectors_are_refused_and_nothing_is_stored(tmp_path, scene, content, message):
    image, probabilities = scene
    storage = LocalStorage(tmp_path / "storage")
    bad = tmp_path / "roads.geojson"
    bad.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        _job(storage, image, bad, probabilities)
    assert storage.list("missing") == []


def test_vectors_elsewhere_are_refused_with_the_image_box(tmp_path, scene):
    image, probabilities = scene
    storage = LocalStorage(tmp_path / "storage")
    far = write_far_vectors(tmp_path / "far.geojson")
    with pytest.raises(InvalidInput, match=r"none of the 1 features of far.geojson is a road line over the image"):
        _job(storage, image, far, probabilities)
    assert storage.list("missing") == []


def test_review_decisions_bulk_reject_and_exports(tmp_path, scene):
    image, probabilities = scene
    storage = LocalStorage(tmp_path / "storage")
    record = _job(storage, image, write_vectors(tmp_path / "roads.geojson"), probabilities)
    best, second, third = read_page(storage, record, MISSING, 0)
    set_decision(storage, record.id, best, "reject", "ana")
    set_decision(storage, record.id, best, "accept", "ana")  # changed her mind: one decision remains
    set_decision(storage, record.id, second, "accept", "bo")
    set_decision(storage, record.id, second, "clear", "bo")
    set_decision(storage, record.id, second, "skip", "ana")
    assert len(storage.list(f"missing/{record.id}/review")) == 2
    assert review_progress(storage, record).model_dump() == {
        "total": 3,
        "accepted": 1,
        "rejected": 0,
        "skipped": 1,
        "bulk_rejected": 0,
        "undecided": 1,
        "bulk_below": None,
    }
    bulk_reject(storage, record.id, below=second.score + 1e-4, reviewer="bo")  # the skipped and the third
    progress = review_progress(storage, record)
    assert (progress.accepted, progress.bulk_rejected, progress.skipped, progress.undecided) == (1, 2, 0, 0)
    assert get_candidate(storage, record, third.id) == third

    accepted = decided(storage, record, "accept")
    assert [c.id for c in accepted] == [best.id]
    assert [c.id for c in decided(storage, record, "reject")] == [second.id, third.id]
    feature = candidates_geojson(accepted, record, tags=True)["features"][0]
    expected = {"highway": "road", "source": "roadseg roads v7", "score": best.score}
    assert feature["properties"].items() >= expected.items()
    assert feature["geometry"]["coordinates"] == best.coordinates_wgs84

    osc = ET.fromstring(osm_change(accepted, record))
    nodes, ways = osc.findall("create/node"), osc.findall("create/way")
    assert len(ways) == 1 and len(nodes) == len(best.coordinates_wgs84)
    assert all(int(n.get("id")) < 0 for n in nodes) and int(ways[0].get("id")) < 0
    assert [float(nodes[0].get("lon")), float(nodes[0].get("lat"))] == pytest.approx(best.coordinates_wgs84[0])
    assert [nd.get("ref") for nd in ways[0].findall("nd")] == [n.get("id") for n in nodes]
    tags = {t.get("k"): t.get("v") for t in ways[0].findall("tag")}
    assert tags["highway"] == "road" and tags["source"] == "roadseg roads v7"


def test_decisions_become_a_dataset_of_band_and_surface_masks(tmp_path, scene):
    from PIL import Image
    from roadseg.mask_values import IGNORE
    from roadseg.missing.dataset import export_dataset

    image, probabilities = scene
    storage = LocalStorage(tmp_path / "storage")
    record = _job(storage, image, write_vectors(tmp_path / "roads.geojson"), probabilities)
    best, second, _ = read_page(storage, record, MISSING, 0)
    set_decision(storage, record.id, best, "accept", "ana")
    set_decision(storage, record.id, second, "reject", "ana")  # the same road, but a reviewer may say no
    out = tmp_path / "dataset"
    source = export_dataset(storage, [record.id], str(out), get_settings(), tile_px=256)
    assert source["targets"] == "both" and source["pixel_size_m"] == PIXEL
    assert json.loads((out / "source.json").read_text())["candidates"] == {"accepted": 1, "rejected": 1}
    stems = sorted(p.stem for p in (out / "train" / "images").iterdir())
    assert stems == sorted(p.stem for p in (out / "train" / "masks").iterdir())
    assert stems == sorted(p.stem for p in (out / "train" / "surface_masks").iterdir())
    band = np.full((SIZE, SIZE), IGNORE, np.uint8)  # tiles with no decided candidate are not written
    surface = band.copy()
    for stem in stems:
        row, col = (int(part[1:]) for part in stem.split("_")[-2:])
        tile = np.array(Image.open(out / "train" / "masks" / f"{stem}.png"))
        band[row : row + tile.shape[0], col : col + tile.shape[1]] = tile
        surface[row : row + tile.shape[0], col : col + tile.shape[1]] = np.array(
            Image.open(out / "train" / "surface_masks" / f"{stem}.png")
        )
    accepted_col = int((np.mean([x for x, _ in best.coordinates]) - ORIGIN[0]) / PIXEL)
    rejected_col = int((np.mean([x for x, _ in second.coordinates]) - ORIGIN[0]) / PIXEL)
    column = band[:, accepted_col]
    assert set(np.unique(band)) == {0, 255, IGNORE}
    assert np.flatnonzero(column == 255).tolist() == list(range(323, 337))  # 7 m band = 14 px around row 330
    assert np.flatnonzero(surface[:, accepted_col] == 255).tolist() == list(range(324, 336))  # 6 m road
    rejected_rows = np.flatnonzero(band[:, rejected_col] == 0)  # the rejected corridor, 6 m wide
    assert len(rejected_rows) in (12, 13) and abs(rejected_rows.mean() + 0.5 - 330) <= 2  # skeleton: ±1-2 px
    assert (band[:300] == IGNORE).all()  # nothing was decided there


def test_plain_image_works_in_pixels_and_says_so(tmp_path):
    """A plain PNG with roads in pixel coordinates: candidates in pixels, no EPSG:4326, no OSM change file."""
    from PIL import Image
    from utils.missing import road_image

    image = tmp_path / "photo.png"
    Image.fromarray(road_image()).save(image)
    probabilities = tmp_path / "probability.tif"
    with (
        rasterio.open(write_probabilities(tmp_path / "geo.tif")) as ds,
        rasterio.open(probabilities, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="float32") as out,
    ):
        out.write(ds.read(1), 1)
    vectors = tmp_path / "roads_px.geojson"
    lines = [[[0, 100], [512, 100]], [[256, 0], [256, 512]]]
    vectors.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": c}}
                    for c in lines
                ],
            }
        )
    )
    storage = LocalStorage(tmp_path / "storage")
    with pytest.raises(InvalidInput, match="pixel size"):
        _job(storage, image, vectors, probabilities)
    record = _job(storage, image, vectors, probabilities, pixel_size_m=0.5)
    missing = list(all_candidates(storage, record, MISSING))
    assert len(missing) == 2  # the south road, cut by the central one
    assert all(c.coordinates_wgs84 is None for c in missing)
    assert all(abs(y - 330.5) < 2 for c in missing for _, y in c.coordinates)  # pixel rows
    assert sum(c.length_m for c in missing) == pytest.approx(SIZE * 0.5 - 2 * TOLERANCE, abs=6.0)
    collection = candidates_geojson(missing, record)
    assert collection["roadseg"]["crs"] is None and "pixel" in collection["roadseg"]["note"]
    with pytest.raises(InvalidInput, match="no georeference"):
        osm_change(missing, record)
