"""Bad vector input gives clear messages or records, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from roadseg.cli import main
from roadseg.errors import InvalidInput
from roadseg.labeler.run import LabelOptions, label_raster_file
from roadseg.labeler.vectors import VectorSource
from roadseg.labeler.widths import WidthSpec
from utils.geodata import DEGREES_PER_PX, SOLARIS_ORIGIN
from utils.labeler import line_feature, write_geojson
from utils.paths import DATA

#: The solaris-like stand-in in tests/data: 200 px of 2.7e-6 degrees (0.30 m north-south) in Las Vegas.
IMAGE = DATA / "solaris-road-mask" / "road_mask_input.tif"
LEFT, TOP = SOLARIS_ORIGIN


def lonlat(row: float, col: float) -> list[float]:
    """The EPSG:4326 position of a pixel centre of ``IMAGE``."""
    return [LEFT + (col + 0.5) * DEGREES_PER_PX, TOP - (row + 0.5) * DEGREES_PER_PX]


#: A west-east line across the image, along row 100.
INSIDE = [lonlat(100, 20), lonlat(100, 180)]


@pytest.fixture
def image():
    return IMAGE


def _label(image, vectors, tmp_path, **options):
    out = tmp_path / "mask.tif"
    record = label_raster_file(image, vectors, out, LabelOptions(**options))
    with rasterio.open(out) as ds:
        return record, ds.read(1)


def test_empty_feature_collection_gives_an_empty_mask_and_a_warning(image, tmp_path):
    record, mask = _label(image, write_geojson(tmp_path / "empty.geojson", []), tmp_path)
    assert mask.max() == 0
    assert record["flags"] == ["no_road"]
    assert "has no features" in record["vectors"]["warnings"][0]


def test_zero_byte_file_is_refused_with_the_path(tmp_path):
    path = tmp_path / "broken.geojson"
    path.write_bytes(b"")
    with pytest.raises(InvalidInput, match="cannot read vector file .*broken.geojson"):
        VectorSource.open(path)


def test_vectors_outside_the_scene_are_reported(image, tmp_path):
    far = write_geojson(tmp_path / "paris.geojson", [line_feature([[2.35, 48.85], [2.36, 48.86]])])
    record, mask = _label(image, far, tmp_path)
    assert mask.max() == 0
    assert record["vectors"]["roads"]["read"] == 0
    assert "no road features intersect the scene" in record["vectors"]["warnings"][0]


def test_invalid_null_and_point_geometries_are_repaired_or_dropped_with_counts(image, tmp_path):
    (x0, y0), (x1, y1) = lonlat(180, 40), lonlat(120, 160)
    features = [
        line_feature(INSIDE),
        {"type": "Feature", "properties": {}, "geometry": None},
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": INSIDE[0]}},
        # A bow-tie road polygon (self-intersecting): make_valid keeps both triangles.
        {
            "type": "Feature",
            "properties": {},
            "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y1], [x1, y0], [x0, y1], [x0, y0]]]},
        },
    ]
    record, mask = _label(image, write_geojson(tmp_path / "bad.geojson", features), tmp_path)
    report = record["vectors"]["roads"]
    assert report["read"] == 3  # GDAL's spatial filter already skips the null geometry
    assert report["repaired"] == 1
    assert report["unsupported"] == 1 and report["unsupported_types"] == ["Point"]
    with rasterio.open(image) as ds:
        row, col = ds.index(x0 + 10 * DEGREES_PER_PX, (y0 + y1) / 2)  # inside the left triangle of the bow tie
        line_row, line_col = ds.index(*lonlat(100, 60))
    assert mask[row, col] == 255
    assert mask[line_row, line_col] == 255


def test_crs_less_shapefile_needs_assume_crs(image, tmp_path, capsys):
    import geopandas as gpd
    from shapely.geometry import LineString

    path = tmp_path / "nocrs.shp"
    gpd.GeoDataFrame(geometry=[LineString(INSIDE)]).to_file(path)
    assert not path.with_suffix(".prj").exists()
    with pytest.raises(InvalidInput, match="no coordinate reference system; pass --assume-crs"):
        VectorSource.open(path)
    # Through the CLI: a clear one-line error and exit status 2, no traceback.
    assert main(["label", str(image), "--vectors", str(path), "--out", str(tmp_path / "m.tif")]) == 2
    assert "--assume-crs" in capsys.readouterr().err
    record, mask = _label(image, path, tmp_path, assume_crs="EPSG:4326", widths=WidthSpec(width=4.0))
    # 4 m is 13 to 14 rows of 0.30 m; the line crosses columns 20..180 (plus its round ends).
    assert np.count_nonzero(mask[:, 100] == 255) == pytest.approx(4.0 / 0.2997, abs=1)
    assert np.flatnonzero(mask[100] == 255)[[0, -1]].tolist() == pytest.approx([20 - 8, 180 + 8], abs=1)
    assert record["vectors"]["roads"]["kept"] == 1


def test_missing_layer_lists_the_available_ones(tmp_path):
    import geopandas as gpd
    from shapely.geometry import LineString

    path = tmp_path / "roads.gpkg"
    gpd.GeoDataFrame(geometry=[LineString(INSIDE)], crs=4326).to_file(path, layer="streets")
    with pytest.raises(InvalidInput, match=r"has no layer 'roads'; available layers: streets"):
        VectorSource.open(path, layer="roads")
    assert VectorSource.open(path, layer="streets").layer == "streets"


def test_osm_file_uses_lines_layer_and_keeps_only_highways(image, tmp_path):
    """OSM data (XML here; PBF goes through the same GDAL OSM driver) has rivers too: only highway=* is road."""
    road, canal = [lonlat(60, 20), lonlat(60, 180)], [lonlat(150, 20), lonlat(150, 180)]
    nodes = [(i + 1, lon, lat) for i, (lon, lat) in enumerate(road + canal)]
    xml = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test">']
    xml += [f'<node id="{i}" lat="{lat}" lon="{lon}" version="1"/>' for i, lon, lat in nodes]
    xml += [
        '<way id="10" version="1"><nd ref="1"/><nd ref="2"/><tag k="highway" v="residential"/></way>',
        '<way id="11" version="1"><nd ref="3"/><nd ref="4"/><tag k="waterway" v="canal"/></way>',
        "</osm>",
    ]
    path = tmp_path / "area.osm"
    path.write_text("\n".join(xml))
    source = VectorSource.open(path)
    assert (source.layer, source.driver, source.where) == ("lines", "OSM", "highway IS NOT NULL")
    record, mask = _label(image, path, tmp_path, widths=WidthSpec(table_attr="highway"))
    with rasterio.open(image) as ds:
        road_row, col = ds.index(*lonlat(60, 100))
        canal_row, _ = ds.index(*lonlat(150, 100))
    assert record["vectors"]["roads"]["kept"] == 1
    assert mask[road_row, col] == 255 and mask[canal_row, col] == 0
    # residential = 7 m wide: about 23 px north-south at 0.3 m/px
    assert int((mask[:, col] == 255).sum()) == pytest.approx(7.0 / 0.2997, abs=2)
    assert np.unique(mask).tolist() == [0, 255]


def test_clean_geometries_counts_null_empty_and_collections():
    import geopandas as gpd
    from roadseg.labeler.vectors import clean_geometries
    from shapely.geometry import GeometryCollection, LineString, Point

    frame = gpd.GeoDataFrame(
        geometry=[
            None,
            LineString(),
            LineString([(0, 0), (1, 1)]),
            GeometryCollection([Point(0, 0), LineString([(0, 0), (2, 0)])]),
        ]
    )
    cleaned, report = clean_geometries(frame)
    assert (report.read, report.null_or_empty, report.unsupported) == (4, 2, 1)
    assert list(cleaned.geom_type) == ["LineString", "LineString"]


def test_scene_problems_are_clear(tmp_path):
    import json

    from roadseg.errors import NotFound
    from roadseg.labeler.run import resolve_scene
    from roadseg.storage import LocalStorage

    storage = LocalStorage(tmp_path)
    with pytest.raises(NotFound, match="no scene 'nope': ingest the scene first"):  # no storage URL (issue 30)
        resolve_scene("nope", storage)
    storage.write_text("scenes/photo/manifest.json", json.dumps({"scene_id": "photo", "georeferenced": False}))
    with pytest.raises(InvalidInput, match="scene photo is not georeferenced"):
        resolve_scene("photo", storage)
    with pytest.raises(InvalidInput, match="must end in scenes/<scene_id>/manifest.json"):
        resolve_scene(str(tmp_path / "manifest.json"), storage)


def test_option_mistakes_are_clear(image, tmp_path):
    roads = write_geojson(tmp_path / "roads.geojson", [line_feature(INSIDE)])
    with pytest.raises(InvalidInput, match="mode 'edges' needs --edge-vectors"):
        label_raster_file(image, roads, tmp_path / "m.tif", LabelOptions(mode="edges"))
    with pytest.raises(InvalidInput, match="--lane-width needs --width-attr"):
        WidthSpec(lane_width=3.7)
    with pytest.raises(InvalidInput, match="no built-in width table for 'kind'"):
        WidthSpec(table_attr="kind")
    with pytest.raises(InvalidInput, match="unknown mode 'pixels'"):
        LabelOptions(mode="pixels")
