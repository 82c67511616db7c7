"""``roadseg graph``, ``roadseg apls`` and ``roadseg route``: vectorize masks, score graphs, find routes."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from roadseg.errors import InvalidInput
from roadseg.pixel_size import metres_arg
from roadseg.roadnet.params import GraphParams

if TYPE_CHECKING:
    from roadseg.cli import Subcommands

GRAPH_EPILOG = """examples:
  roadseg graph pred_mask.tif --out roads.geojson
  roadseg graph probabilities.tif --threshold 0.4 --out roads.geojson --gpkg
  roadseg graph mask.png --pixel-size 1.0 --out roads.geojson      # plain image, 1 m pixels
The GeoJSON has one LineString per edge (properties u, v, length_m / length_px) in the image CRS, or in
pixels (x = column, y = row) for images without georeferencing. --gpkg also writes <out>.gpkg.
Cleaning thresholds are metres (pixels for plain images without --pixel-size)."""

APLS_EPILOG = """examples:
  roadseg apls truth.geojson roads.geojson
  roadseg apls ground_truth.gpickle proposal.gpickle --nodes-only --min-path 0.001   # reference settings
  roadseg apls truth.geojson roads.geojson --topo --json
Inputs: GeoJSON / GeoPackage road lines (lines are split where they share vertices) or networkx gpickles.
Prints APLS, both directions, and the counts; --json prints one JSON object."""

ROUTE_EPILOG = """examples:
  roadseg route roads.geojson --from 120 40 --to 900 870                  # pixel column/row
  roadseg route roads.geojson --crs EPSG:4326 --from -115.30 36.16 --to -115.29 36.17
Snaps both points to the nearest road (within --max-snap, metres or pixels), prints the route as a GeoJSON
Feature with its length. Exit status 2 with a message when no road connects the points or a point is
too far from any road."""


def _params_from_args(args: argparse.Namespace) -> GraphParams:
    given = {f.name: getattr(args, f.name) for f in fields(GraphParams) if getattr(args, f.name, None) is not None}
    return GraphParams(**given)


def _graph(args: argparse.Namespace) -> int:
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from roadseg.roadnet.graph import RasterMask, graph_to_geojson, mask_to_graph, total_length, weight_key, write_gpkg

    params = _params_from_args(args)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            ds = rasterio.open(args.mask)
        except rasterio.errors.RasterioIOError as exc:
            raise InvalidInput(f"{args.mask}: cannot read raster: {exc}") from exc
        with ds:
            georef = ds.crs is not None
            where = f"CRS {ds.crs.to_string()}" if georef else "pixel coordinates"
            print(f"vectorizing {args.mask} ({ds.width}x{ds.height}, {where})", file=sys.stderr)

            def progress(done: int, total: int) -> None:
                if total > 1:
                    print(f"  window {done}/{total}", file=sys.stderr)

            g = mask_to_graph(
                RasterMask(ds), ds.transform if georef else None, ds.crs if georef else None, params, progress=progress
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(graph_to_geojson(g)))
    if args.gpkg:
        write_gpkg(g, str(out.with_suffix(".gpkg")))
    unit = "m" if weight_key(g) == "length_m" else "px"
    print(
        f"{g.number_of_nodes()} nodes, {g.number_of_edges()} edges, {total_length(g):.1f} {unit} of road "
        f"in {time.perf_counter() - t0:.1f} s -> {out}" + (f" and {out.with_suffix('.gpkg')}" if args.gpkg else "")
    )
    return 0


def _apls(args: argparse.Namespace) -> int:
    from roadseg.roadnet.apls import AplsParams, apls
    from roadseg.roadnet.io import load_graph

    params = AplsParams(
        control_spacing_m=args.spacing,
        max_snap_m=args.max_snap,
        min_path_length_m=args.min_path,
        curved_eps=1e3 if args.nodes_only else -1.0,
        pixel_size_m=args.pixel_size,
    )
    gt, prop = load_graph(args.gt), load_graph(args.prop)
    result = apls(gt, prop, params)
    topo_scores = None
    if args.topo:
        from roadseg.roadnet.topo import TopoParams, topo

        topo_scores = topo(gt, prop, TopoParams(hole_size_m=args.max_snap, pixel_size_m=args.pixel_size))
    if args.json:
        print(json.dumps(result.as_dict() | ({"topo": topo_scores} if topo_scores else {})))
    else:
        print(
            f"APLS {result.apls:.4f}  "
            f"(gt->prop {result.gt_onto_prop:.4f} over {result.n_routes_gt_onto_prop} routes, "
            f"prop->gt {result.prop_onto_gt:.4f} over {result.n_routes_prop_onto_gt} routes; "
            f"{result.n_control_gt}/{result.n_control_prop} control points)"
        )
        if topo_scores:
            print(
                "TOPO precision {precision:.4f} recall {recall:.4f} F1 {f1:.4f} (tp {tp}, fp {fp}, fn {fn})".format(
                    **topo_scores
                )
            )
    return 0


def _route(args: argparse.Namespace) -> int:
    from roadseg.roadnet.io import load_graph
    from roadseg.roadnet.route import shortest_route

    g = load_graph(args.graph)
    crs = None if args.crs == "graph" else args.crs
    feature = shortest_route(g, tuple(args.start), tuple(args.end), point_crs=crs, max_snap=args.max_snap)
    text = json.dumps(feature)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    props = feature["properties"]
    length = f"{props['length_m']:.1f} m" if "length_m" in props else f"{props['length_px']:.1f} px"
    print(f"route length {length}", file=sys.stderr)
    return 0


def register(sub: Subcommands) -> None:
    """Add the ``graph``, ``apls`` and ``route`` sub-commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "graph",
        help="vectorize a road mask into a routable road graph (GeoJSON/GeoPackage)",
        description="Skeletonize a road mask (or thresholded probability raster), build a road graph "
        "with nodes at junctions and ends, clean it (spurs, gaps, collinear breaks, specks) and "
        "write LineStrings with lengths in metres.",
        epilog=GRAPH_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("mask", help="single-band raster: 0/255 mask, 0/1 mask or probabilities (GeoTIFF, PNG, ...)")
    p.add_argument("--out", required=True, help="output GeoJSON path")
    p.add_argument("--gpkg", action="store_true", help="also write a GeoPackage beside --out")
    p.add_argument("--threshold", type=float, help="road probability threshold (default 0.5; x255 for uint8)")
    p.add_argument(
        "--pixel-size", dest="pixel_size_m", type=metres_arg, metavar="M", help="metres per pixel for plain images"
    )
    defaults = GraphParams()
    for name, text in (
        ("spur_m", "drop dead-end whiskers shorter than this"),
        ("gap_m", "join a dead end to a road this close"),
        ("collinear_gap_m", "join facing dead ends this far apart"),
        ("collinear_angle_deg", "...if both point within this angle of each other"),
        ("min_component_m", "drop road pieces with less total length"),
        ("loop_m", "drop self-loops shorter than this"),
        ("simplify_m", "Douglas-Peucker tolerance"),
        ("hole_area_m2", "fill mask holes smaller than this"),
    ):
        p.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=float, help=f"{text} (default {getattr(defaults, name):g})"
        )
    p.add_argument("--window", type=int, help="process larger masks in windows of this many pixels (default 2048)")
    p.add_argument("--overlap", type=int, help="context pixels around each window (default 64)")
    p.set_defaults(func=_graph)

    p = sub.add_parser(
        "apls",
        help="APLS graph metric between a ground-truth and a proposal road graph",
        description="Average Path Length Similarity (Van Etten et al. 2018): control points every "
        "50 m, snapped within 4 m, all-pairs route length differences in both directions, harmonic "
        "mean.",
        epilog=APLS_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("gt", help="ground-truth graph (GeoJSON, GeoPackage or gpickle)")
    p.add_argument("prop", help="proposal graph (GeoJSON, GeoPackage or gpickle)")
    p.add_argument("--max-snap", type=float, default=4.0, help="snapping distance in metres (default 4)")
    p.add_argument("--spacing", type=float, default=50.0, help="control point spacing in metres (default 50)")
    p.add_argument("--min-path", type=float, default=10.0, help="shortest route scored, metres (default 10)")
    p.add_argument(
        "--nodes-only",
        action="store_true",
        help="control points at nodes only (how the published reference outputs were made)",
    )
    p.add_argument("--pixel-size", type=metres_arg, metavar="M", help="metres per pixel when both graphs are in pixels")
    p.add_argument("--topo", action="store_true", help="also compute TOPO (150 m radius, 30 m holes of --max-snap)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=_apls)

    p = sub.add_parser(
        "route",
        help="shortest road route between two points on a road graph",
        description="Snap two points to the nearest roads and find the shortest route by length.",
        epilog=ROUTE_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("graph", help="road graph (GeoJSON from `roadseg graph`, GeoPackage or gpickle)")
    p.add_argument("--from", dest="start", nargs=2, type=float, required=True, metavar=("X", "Y"), help="start")
    p.add_argument("--to", dest="end", nargs=2, type=float, required=True, metavar=("X", "Y"), help="end")
    p.add_argument(
        "--crs",
        default="pixel",
        help="coordinates of --from/--to: pixel (default), graph, or a CRS such as EPSG:4326 (lon lat)",
    )
    p.add_argument("--max-snap", type=float, default=50.0, help="max distance to a road (metres, or pixels)")
    p.add_argument("--out", help="also write the route Feature to this file")
    p.set_defaults(func=_route)
