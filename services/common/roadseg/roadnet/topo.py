"""TOPO metric (Biagioni & Eriksson 2012) as computed by CosmiQ/apls ``topo_metric.py`` (read, not copied).

Around each ground-truth node (the *origin*), take the nodes within ``radius_m`` (straight-line) that
connect to it, and put *holes* at those nodes and every ``interval_m`` along their edges (measured outward
from the origin). Do the same on the proposal around its node nearest to the origin (within
``hole_size_m``) to get *marbles*. Each marble falls into the nearest free hole within ``hole_size_m``
(true positive) or is a false positive; empty holes are false negatives. Counts are summed over origins.

Difference to the reference: origins are every ground-truth node once (a seeded sample when there are
more than ``max_origins``) instead of 500 random draws with replacement, so results are repeatable.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable
from dataclasses import dataclass

import networkx as nx
import numpy as np
from scipy.spatial import cKDTree
from shapely.geometry import LineString

from roadseg.roadnet.apls import prepare_pair


@dataclass(frozen=True)
class TopoParams:
    """TOPO settings in metres (neighbourhood radius, hole spacing, hole size) and how many origins to score."""

    radius_m: float = 150.0
    interval_m: float = 30.0
    hole_size_m: float = 4.0
    max_origins: int = 500
    pixel_size_m: float | None = None
    seed: int = 0


def _points_around(g: nx.MultiGraph, origin: Hashable, tree: cKDTree, nodes: list, params: TopoParams) -> np.ndarray:
    """Holes/marbles of the neighbourhood of ``origin``: its nearby connected nodes plus interval points."""
    ox, oy = g.nodes[origin]["x"], g.nodes[origin]["y"]
    near = [nodes[i] for i in tree.query_ball_point((ox, oy), params.radius_m)]
    sub = g.subgraph(near)
    sub = sub.subgraph(nx.node_connected_component(sub, origin))
    points = [(d["x"], d["y"]) for _, d in sub.nodes(data=True)]
    for _, _, line in sub.edges(data="geometry"):
        start, end = line.coords[0], line.coords[-1]
        if math.dist(end, (ox, oy)) < math.dist(start, (ox, oy)):
            line = LineString(line.coords[::-1])
        for d in np.arange(0, line.length, params.interval_m)[1:]:
            p = line.interpolate(d)
            points.append((p.x, p.y))
    return np.array(points).reshape(-1, 2)


def _match(holes: np.ndarray, marbles: np.ndarray, hole_size: float) -> tuple[int, int, int]:
    """Greedy one-marble-per-hole matching, marbles in order: (true pos, false pos, false neg)."""
    if len(holes) == 0:
        return 0, len(marbles), 0
    tree = cKDTree(holes)
    taken: set[int] = set()
    tp = 0
    for m in marbles:
        free = [i for i in tree.query_ball_point(m, hole_size) if i not in taken]
        if free:
            taken.add(min(free, key=lambda i: math.dist(holes[i], m)))
            tp += 1
    return tp, len(marbles) - tp, len(holes) - tp


def topo(gt: nx.MultiGraph, prop: nx.MultiGraph, params: TopoParams = TopoParams()) -> dict:
    """TOPO true/false positives/negatives and precision, recall, F1 (summed over origins)."""
    g_gt, g_p = prepare_pair(gt, prop, params.pixel_size_m)
    if g_gt.number_of_nodes() == 0 or g_p.number_of_nodes() == 0:
        return {"tp": 0, "fp": 0, "fn": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    gt_nodes, p_nodes = list(g_gt.nodes), list(g_p.nodes)
    gt_tree = cKDTree([(g_gt.nodes[n]["x"], g_gt.nodes[n]["y"]) for n in gt_nodes])
    p_tree = cKDTree([(g_p.nodes[n]["x"], g_p.nodes[n]["y"]) for n in p_nodes])
    origins = (
        gt_nodes
        if len(gt_nodes) <= params.max_origins
        else random.Random(params.seed).sample(gt_nodes, params.max_origins)
    )
    tp = fp = fn = 0
    for origin in origins:
        holes = _points_around(g_gt, origin, gt_tree, gt_nodes, params)
        xy = (g_gt.nodes[origin]["x"], g_gt.nodes[origin]["y"])
        dist, i = p_tree.query(xy, distance_upper_bound=params.hole_size_m)
        if not math.isfinite(dist):
            fn += len(holes)
            continue
        marbles = _points_around(g_p, p_nodes[i], p_tree, p_nodes, params)
        a, b, c = _match(holes, marbles, params.hole_size_m)
        tp, fp, fn = tp + a, fp + b, fn + c
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}
