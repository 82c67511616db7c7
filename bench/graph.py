"""Benchmark the road-network layer on a synthetic 4000x4000 road mask.

Prints (1) the time to vectorize the mask (skeleton + tracing + cleaning) against plain skimage
``skeletonize`` of the same mask, measured in the same run, whole-mask and in 2048 px windows; and
(2) routing queries per second of ``shortest_route`` on the cleaned graph against networkx Dijkstra on
the raw 8-connected skeleton pixel graph (what the seed project did), for the same point pairs.

Run: nice -n 10 .venv/bin/python bench/graph.py [--size 4000] [--roads 120] [--queries 30] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import time

import networkx as nx
import numpy as np
from roadseg.roadnet.graph import GraphParams, mask_to_graph, total_length
from roadseg.roadnet.route import NoRoute, shortest_route
from roadseg.roadnet.synthetic import random_road_mask
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize


def timed(repeat: int, fn, *args, **kwargs):
    """Result and best-of-``repeat`` wall time (the machine is shared; the minimum is the least noisy)."""
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return out, best


def pixel_graph(skel: np.ndarray) -> tuple[nx.Graph, np.ndarray]:
    """The raw skeleton as a graph: one node per pixel, 8-neighbour edges weighted 1 or sqrt(2)."""
    rows, cols = np.nonzero(skel)
    index = -np.ones(skel.shape, dtype=np.int64)
    index[rows, cols] = np.arange(len(rows))
    g = nx.Graph()
    g.add_nodes_from(range(len(rows)))
    h, w = skel.shape
    for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):
        r2, c2 = rows + dr, cols + dc
        ok = (r2 >= 0) & (r2 < h) & (c2 >= 0) & (c2 < w)
        a, b = index[rows[ok], cols[ok]], index[r2[ok], c2[ok]]
        keep = b >= 0
        weight = math.sqrt(2) if dr and dc else 1.0
        g.add_weighted_edges_from(zip(a[keep].tolist(), b[keep].tolist(), [weight] * int(keep.sum()), strict=True))
    return g, np.stack([cols, rows], axis=1) + 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--roads", type=int, default=120)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for the vectorization timings")
    args = parser.parse_args()

    mask = random_road_mask(args.size, args.size, n_roads=args.roads, road_px=9, seed=0)
    print(f"mask {args.size}x{args.size}, {mask.mean() * 100:.1f}% road pixels")

    skel, t_skel = timed(args.repeat, skeletonize, mask)
    graph, t_graph = timed(args.repeat, mask_to_graph, mask, params=GraphParams(window=args.size))
    windowed, t_win = timed(args.repeat, mask_to_graph, mask, params=GraphParams(window=2048, overlap=64))
    print(f"skimage skeletonize only (baseline): {t_skel:7.2f} s")
    print(
        f"mask_to_graph whole mask:            {t_graph:7.2f} s  = {t_graph / t_skel:.2f}x baseline  "
        f"({graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges, {total_length(graph):.0f} px)"
    )
    print(
        f"mask_to_graph 2048 px windows:       {t_win:7.2f} s  = {t_win / t_skel:.2f}x baseline  "
        f"({windowed.number_of_nodes()} nodes, {windowed.number_of_edges()} edges, {total_length(windowed):.0f} px)"
    )

    raw, centres = pixel_graph(skel)
    tree = cKDTree(centres)
    rng = np.random.default_rng(1)
    pairs = [tuple(centres[i] for i in rng.choice(len(centres), 2, replace=False)) for _ in range(args.queries)]

    t0 = time.perf_counter()
    ours = []
    for a, b in pairs:
        try:
            ours.append(shortest_route(graph, a, b, max_snap=10)["properties"]["length_px"])
        except NoRoute:
            ours.append(math.inf)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    base = []
    for a, b in pairs:
        ia, ib = int(tree.query(a)[1]), int(tree.query(b)[1])
        try:
            base.append(nx.dijkstra_path_length(raw, ia, ib))
        except nx.NetworkXNoPath:
            base.append(math.inf)
    t_base = time.perf_counter() - t0
    finite = [(o, r) for o, r in zip(ours, base, strict=True) if math.isfinite(o) and math.isfinite(r)]
    rel = np.median([abs(o - r) / r for o, r in finite if r > 0]) if finite else float("nan")
    print(f"raw pixel graph: {raw.number_of_nodes()} nodes, {raw.number_of_edges()} edges")
    print(f"routing, networkx dijkstra on pixel graph (baseline): {args.queries / t_base:8.1f} queries/s")
    print(
        f"routing, shortest_route on cleaned graph:             {args.queries / t_ours:8.1f} queries/s  "
        f"= {t_base / t_ours:.1f}x baseline; median length difference {rel * 100:.2f}% over {len(finite)} pairs"
    )


if __name__ == "__main__":
    main()
