"""Road network layer: mask -> graph (junctions, gaps, windows), GeoJSON round trip, routing, CLIs."""

from __future__ import annotations

import collections
import contextlib
import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine
from roadseg.cli import main
from roadseg.roadnet.graph import (
    GraphParams,
    graph_from_geojson,
    graph_to_geojson,
    mask_to_graph,
    total_length,
)
from roadseg.roadnet.route import NoRoute, TooFarFromRoad, shortest_route
from roadseg.roadnet.synthetic import random_road_mask

#: 0.5 m pixels in UTM zone 11N
UTM_HALF_METRE = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0)


def degrees(g) -> dict[int, int]:
    return dict(sorted(collections.Counter(d for _, d in g.degree()).items()))


def plus_mask() -> np.ndarray:
    """Two 5-px roads crossing at pixel (30, 30); arms reach 25 px from the centre."""
    m = np.zeros((61, 61), dtype=bool)
    m[28:33, 5:56] = True
    m[5:56, 28:33] = True
    return m


def t_mask() -> np.ndarray:
    """A horizontal road along row 20 (cols 5-94) and a stem down column 50 (rows 20-94)."""
    m = np.zeros((100, 100), dtype=bool)
    m[18:23, 5:95] = True
    m[20:95, 48:53] = True
    return m


def test_plus_junction_has_one_degree4_node_and_four_arms():
    g = mask_to_graph(plus_mask())
    assert degrees(g) == {1: 4, 4: 1}
    (centre,) = [n for n, d in g.degree() if d == 4]
    assert g.nodes[centre]["x"] == pytest.approx(30.5, abs=1) and g.nodes[centre]["y"] == pytest.approx(30.5, abs=1)
    lengths = sorted(d["length_px"] for _, _, d in g.edges(data=True))
    # skeletonization stops ~half a road width (2 px) short of the 25 px arm ends
    assert lengths == pytest.approx([23.5] * 4, abs=1.5)
    assert g.graph["units"] == "px" and all("length_m" not in d for _, _, d in g.edges(data=True))


def test_gap_of_a_few_pixels_is_bridged():
    m = np.zeros((40, 200), dtype=bool)
    m[18:23, 5:95] = True
    m[18:23, 99:195] = True  # 4 px gap
    g = mask_to_graph(m)
    assert g.number_of_edges() == 1 and degrees(g) == {1: 2}
    assert total_length(g) == pytest.approx(185, abs=3)
    # without gap joining the two pieces stay apart
    apart = mask_to_graph(m, params=GraphParams(gap_m=0, collinear_gap_m=0))
    assert apart.number_of_edges() == 2


def test_collinear_break_is_bridged_but_parallel_ends_are_not():
    m = np.zeros((60, 300), dtype=bool)
    m[18:23, 5:130] = True
    m[18:23, 145:295] = True  # 15 px break on one straight road: beyond gap_m, within collinear_gap_m
    m[40:45, 5:130] = True
    m[48:53, 145:295] = True  # offset road: its ends do not point at each other
    g = mask_to_graph(m)
    assert g.number_of_edges() == 3
    assert max(d["length_px"] for _, _, d in g.edges(data=True)) == pytest.approx(286, abs=3)


def test_short_spurs_are_removed_and_small_specks_dropped():
    m = t_mask()
    m[60:62, 53:57] = True  # a 4 px bump on the stem: would be a whisker
    m[80:84, 10:14] = True  # a 4x4 speck
    g = mask_to_graph(m)
    assert degrees(g) == {1: 3, 3: 1}


def test_large_mask_in_windows_matches_whole_mask():
    m = random_road_mask(600, 700, n_roads=25, seed=3)
    whole = mask_to_graph(m)
    for window in (128, 200):
        parts = mask_to_graph(m, params=GraphParams(window=window, overlap=32))
        assert degrees(parts) == degrees(whole)
        assert parts.number_of_edges() == whole.number_of_edges()
        assert total_length(parts) == pytest.approx(total_length(whole), rel=1e-3)


def test_georeferenced_lengths_are_metres():
    transform = UTM_HALF_METRE
    g = mask_to_graph(t_mask(), transform, "EPSG:32611")
    assert g.graph["crs"] == "EPSG:32611" and g.graph["units"] == "m"
    for _, _, d in g.edges(data=True):
        assert d["length_m"] == pytest.approx(d["length_px"] * 0.5, rel=1e-3)
        x0, y0 = d["geometry"].coords[0]
        assert 500000 < x0 < 500050 and 3999950 < y0 < 4000000


def test_geojson_round_trip_keeps_topology_and_lengths():
    g = mask_to_graph(random_road_mask(300, 300, n_roads=10, seed=1))
    fc = json.loads(json.dumps(graph_to_geojson(g)))
    assert {f["geometry"]["type"] for f in fc["features"]} == {"LineString"}
    back = graph_from_geojson(fc)
    assert degrees(back) == degrees(g)
    assert total_length(back) == pytest.approx(total_length(g), rel=1e-5)


def test_route_across_t_junction_has_expected_length():
    g = mask_to_graph(t_mask())
    route = shortest_route(g, (10, 20), (50, 90))
    # 40.5 px along the road to the junction at column 50.5, then ~69.5 px down the stem
    assert route["properties"]["length_px"] == pytest.approx(110, abs=1.5)
    coords = route["geometry"]["coordinates"]
    assert coords[0] == pytest.approx([10, 20.5], abs=1) and coords[-1] == pytest.approx([50, 90], abs=1)
    # same road, no junction in between
    assert shortest_route(g, (10, 20), (30, 21))["properties"]["length_px"] == pytest.approx(20, abs=0.5)


def test_route_in_metres_from_pixel_points_on_georeferenced_graph():
    transform = UTM_HALF_METRE
    g = mask_to_graph(t_mask(), transform, "EPSG:32611")
    route = shortest_route(g, (10, 20), (50, 90), point_crs="pixel", max_snap=5)
    assert route["properties"]["length_m"] == pytest.approx(55, abs=0.75)


def test_no_route_and_too_far_answers():
    m = t_mask()
    m[50:55, 60:95] = True  # a separate road east of the stem
    g = mask_to_graph(m)
    with pytest.raises(NoRoute) as no_route:
        shortest_route(g, (10, 20), (90, 52))
    assert no_route.value.status_code == 404
    with pytest.raises(TooFarFromRoad) as too_far:
        shortest_route(g, (10, 20), (95, 70), max_snap=5)
    assert too_far.value.status_code == 422 and "from the nearest road" in str(too_far.value)


def test_cli_graph_and_route(tmp_path, capsys):
    path = tmp_path / "mask.tif"
    transform = UTM_HALF_METRE
    with rasterio.open(
        path, "w", driver="GTiff", width=100, height=100, count=1, dtype="uint8", crs="EPSG:32611", transform=transform
    ) as ds:
        ds.write(t_mask().astype(np.uint8) * 255, 1)
    out = tmp_path / "roads.geojson"
    assert main(["graph", str(path), "--out", str(out), "--gpkg", "--window", "64", "--overlap", "16"]) == 0
    fc = json.loads(out.read_text())
    assert len(fc["features"]) == 3 and fc["roadseg"]["crs"] == "EPSG:32611"
    assert (tmp_path / "roads.gpkg").is_file()
    assert "3 edges" in capsys.readouterr().out
    assert main(["route", str(out), "--from", "10", "20", "--to", "50", "90"]) == 0
    feature = json.loads(capsys.readouterr().out)
    assert feature["properties"]["length_m"] == pytest.approx(55, abs=0.75)
    assert main(["route", str(out), "--from", "10", "20", "--to", "99", "0", "--max-snap", "2"]) == 2
    assert "from the nearest road" in capsys.readouterr().err


def test_cli_geopackage_has_its_spatial_index_and_label_reads_it(tmp_path):
    """As users run them (a fresh ``roadseg`` process): ``graph --gpkg`` writes the ``rtree_`` index
    tables, and ``label --vectors`` reads that GeoPackage. Both broke while the CLI imported TensorFlow
    (its bundled SQLite lacks R-tree) before GDAL."""
    profile = {"driver": "GTiff", "width": 100, "height": 100, "crs": "EPSG:32611", "transform": UTM_HALF_METRE}
    with rasterio.open(tmp_path / "mask.tif", "w", count=1, dtype="uint8", **profile) as ds:
        ds.write(t_mask().astype(np.uint8) * 255, 1)
    with rasterio.open(tmp_path / "scene.tif", "w", count=3, dtype="uint8", **profile) as ds:
        ds.write(np.full((3, 100, 100), 90, np.uint8))
    cli = [sys.executable, "-m", "roadseg.cli"]
    subprocess.run([*cli, "graph", "mask.tif", "--out", "roads.geojson", "--gpkg"], cwd=tmp_path, check=True)
    with contextlib.closing(sqlite3.connect(tmp_path / "roads.gpkg")) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "roads" in tables and "rtree_roads_geom" in tables, sorted(tables)
    command = [*cli, "label", "scene.tif", "--vectors", "roads.gpkg", "--width", "4", "--out", "label.tif"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with rasterio.open(tmp_path / "label.tif") as ds:
        assert ds.read(1).any()


def test_geojson_lines_are_split_where_they_share_vertices():
    lines = [[[0, 0], [5, 0], [10, 0]], [[5, -5], [5, 0], [5, 5]]]  # crossing at the shared vertex (5, 0)
    features = [
        {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": c}} for c in lines
    ]
    fc = {"type": "FeatureCollection", "features": features, "roadseg": {"crs": None}}
    g = graph_from_geojson(fc)
    assert degrees(g) == {1: 4, 4: 1} and total_length(g) == pytest.approx(20)


def test_old_networkx_gpickle_layout_is_rebuilt(tmp_path):
    import pickle

    import networkx as nx
    from roadseg.roadnet.io import load_graph
    from shapely.geometry import LineString

    g = nx.MultiGraph(crs={"proj": "utm", "zone": 11, "datum": "WGS84", "units": "m"})
    g.add_node(1, x=0.0, y=0.0)
    g.add_node(2, x=30.0, y=40.0)
    g.add_edge(1, 2, geometry=LineString([(0, 0), (30, 40)]).wkt)
    old = nx.MultiGraph.__new__(nx.MultiGraph)  # networkx 1.x kept node/adj/graph, no _node/_adj
    old.__dict__.update(graph=g.graph, node=dict(g._node), adj={u: dict(n) for u, n in g._adj.items()})
    path = tmp_path / "old.gpickle"
    path.write_bytes(pickle.dumps(old))
    loaded = load_graph(path)
    assert loaded.graph["crs"] == "EPSG:32611" and loaded.number_of_edges() == 1
    assert next(iter(loaded.edges(data="length_m")))[2] == pytest.approx(50.0)
