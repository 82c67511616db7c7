"""APLS: reference cross-check, vectorization round trip on real Vegas labels, SpaceNet-vs-OSM pairs."""

from __future__ import annotations

import json
import math

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize
from roadseg.cli import main
from roadseg.metrics import relaxed_precision_recall_f1
from roadseg.roadnet.apls import AplsParams, apls
from roadseg.roadnet.graph import graph_to_mask, mask_to_graph
from roadseg.roadnet.io import load_graph
from roadseg.roadnet.route import shortest_route
from roadseg.roadnet.topo import topo

#: Published output of the reference implementation for img0 (max_snap_dist 4 m, hole 4 m).
REFERENCE = {"apls": 0.7362019410731921, "gt_onto_prop": 0.7973714316363272, "prop_onto_gt": 0.6837488820254419}


@pytest.fixture(scope="module")
def vegas(shared_dir):
    return shared_dir / "data" / "spacenet-vegas"


@pytest.fixture(scope="module")
def vegas_round_trip(vegas):
    """Vegas img0 labels rasterized as 4 m wide roads on the image grid, then vectorized back."""
    with rasterio.open(vegas / "RGB-PanSharpen_AOI_2_Vegas_img0.tif") as ds:
        transform, crs, shape = ds.transform, ds.crs, (ds.height, ds.width)
    lines = gpd.read_file(vegas / "AOI_2_Vegas_img0_roads.geojson")
    roads = lines.to_crs(32611).buffer(2.0).to_crs(lines.crs)  # 4 m wide, buffered in metres
    mask = rasterize([(geom, 255) for geom in roads], out_shape=shape, transform=transform, fill=0, dtype="uint8")
    truth = load_graph(vegas / "AOI_2_Vegas_img0_roads.geojson")
    return truth, mask_to_graph(mask, transform, crs), shape


def test_apls_matches_reference_implementation(vegas):
    """Cross-check against the published CosmiQ/apls output for ground_truth_img0 / proposal_img0.

    The published numbers were produced by the reference ``execute()`` defaults, where ``is_curved_eps=1e3``
    skips every midpoint (control points are the graph nodes only) and ``main()`` passes
    ``min_path_length=0.001``; with those settings we land within 3e-4 of each published figure. The
    remaining difference comes from lengths: the reference weights native edges by their stored
    ``length`` attribute, we measure every edge on its UTM geometry. With our defaults (control points
    every 50 m) the same pair scores ~0.757 (printed below).
    """
    gt = load_graph(vegas / "apls-reference" / "ground_truth_img0.gpickle")
    prop = load_graph(vegas / "apls-reference" / "proposal_img0.gpickle")
    assert gt.graph["crs"] == "EPSG:32611" and gt.number_of_edges() == 90 and prop.number_of_edges() == 108
    result = apls(gt, prop, AplsParams(curved_eps=1e3, min_path_length_m=0.001))
    for key, published in REFERENCE.items():
        assert getattr(result, key) == pytest.approx(published, abs=0.01), key
    assert result.apls == pytest.approx(REFERENCE["apls"], abs=1e-3)
    default = apls(gt, prop)
    print(
        f"\nreference pair: nodes-only {result.apls:.4f} (published {REFERENCE['apls']:.4f}); "
        f"50 m control points {default.apls:.4f}"
    )
    assert 0.6 < default.apls < 0.9


def test_apls_of_identical_graphs_is_one_and_of_empty_proposal_zero(vegas):
    gt = load_graph(vegas / "apls-reference" / "ground_truth_img0.gpickle")
    assert apls(gt, gt).apls == pytest.approx(1.0)
    empty = gt.copy()
    empty.remove_edges_from(list(empty.edges))
    assert apls(gt, empty).apls == 0.0


def test_vegas_labels_rasterized_and_vectorized_back_score_high(vegas_round_trip):
    truth, graph, shape = vegas_round_trip
    assert graph.graph["crs"] == "EPSG:4326" and 0.25 < graph.graph["pixel_size_m"] < 0.3
    result = apls(truth, graph)
    print(
        f"\nVegas img0 round trip: APLS {result.apls:.4f} (gt->prop {result.gt_onto_prop:.4f}, "
        f"prop->gt {result.prop_onto_gt:.4f})"
    )
    assert result.apls >= 0.9
    # total road length survives within 5 %
    total = sum(d for _, _, d in graph.edges(data="length_m"))
    truth_total = sum(d for _, _, d in truth.edges(data="length_m"))
    assert total == pytest.approx(truth_total, rel=0.05)
    # centreline agreement in pixels, with the shared relaxed metric (rho 8 px ~ 2 m)
    relaxed = relaxed_precision_recall_f1(
        graph_to_mask(graph, shape) > 0, graph_to_mask(truth, shape, graph.graph["transform"]), rho=8
    )
    assert relaxed["relaxed_f1"] > 0.9


def test_route_between_lon_lat_points_on_vegas_graph(vegas_round_trip):
    truth, graph, _ = vegas_round_trip
    # two points on the ground-truth lines, given in lon/lat
    edge = next(d for _, _, d in truth.edges(data=True) if d["length_m"] > 100)
    line = edge["geometry"]
    a, b = line.interpolate(0.1, normalized=True), line.interpolate(0.9, normalized=True)
    route = shortest_route(graph, (a.x, a.y), (b.x, b.y), point_crs="EPSG:4326", max_snap=4)
    assert route["properties"]["length_m"] == pytest.approx(0.8 * edge["length_m"], rel=0.05)
    lon, lat = route["geometry"]["coordinates"][0]
    assert math.isclose(lon, a.x, abs_tol=1e-4) and math.isclose(lat, a.y, abs_tol=1e-4)


def test_spacenet_vs_osm_graph_pairs(vegas, artifacts_dir):
    """The seven SpaceNet-vs-OSM pairs from CosmiQ/apls: computed and reported (test-artifacts/)."""
    pairs = vegas / "apls-reference" / "graph-pairs"
    scores = {}
    for gt_path in sorted((pairs / "spacenet").glob("*.geojson")):
        result = apls(load_graph(gt_path), load_graph(pairs / "osm" / gt_path.name))
        scores[gt_path.stem] = result.as_dict()
        assert 0.0 <= result.apls <= 1.0
    assert len(scores) == 7
    print("\nSpaceNet (gt) vs OSM (proposal):")
    for name, s in scores.items():
        print(f"  {name}: APLS {s['apls']:.4f} (gt->prop {s['gt_onto_prop']:.4f}, prop->gt {s['prop_onto_gt']:.4f})")
    print(f"  mean APLS {np.mean([s['apls'] for s in scores.values()]):.4f}")
    (artifacts_dir / "apls_spacenet_vs_osm.json").write_text(json.dumps(scores, indent=1))


def test_cli_apls(vegas, capsys):
    ref = vegas / "apls-reference"
    argv = ["apls", str(ref / "ground_truth_img0.gpickle"), str(ref / "proposal_img0.gpickle")]
    assert main([*argv, "--nodes-only", "--min-path", "0.001", "--topo", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["apls"] == pytest.approx(REFERENCE["apls"], abs=1e-3) and 0.6 < out["topo"]["f1"] < 0.66


def test_topo_close_to_reference_and_perfect_on_identical_graphs(vegas):
    """Reference TOPO for img0 (hole 4 m): precision 0.682, recall 0.587, F1 0.631 from 500 random origins
    drawn with replacement; we use every ground-truth node once, so only closeness is expected."""
    gt = load_graph(vegas / "apls-reference" / "ground_truth_img0.gpickle")
    prop = load_graph(vegas / "apls-reference" / "proposal_img0.gpickle")
    scores = topo(gt, prop)
    assert scores["precision"] == pytest.approx(0.6817, abs=0.03)
    assert scores["recall"] == pytest.approx(0.5872, abs=0.03)
    assert scores["f1"] == pytest.approx(0.6309, abs=0.02)
    assert topo(gt, gt)["f1"] == 1.0


def test_path_similarity_ignores_routes_of_zero_length():
    """Two control points at the same spot (or a point to itself) give a 0 m route: no division by zero."""
    from roadseg.roadnet.apls import path_similarity

    native = {"a": {"a": 0.0, "b": 0.0, "c": 10.0}}
    prime = {"a": {"a": 0.0, "b": 0.0, "c": 12.0}}
    score, routes = path_similarity(native, prime, ["a"], min_len=0.0)
    assert routes == 1 and score == pytest.approx(0.8)
