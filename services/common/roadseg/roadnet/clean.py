"""Clean a traced pixel graph the way the SpaceNet 3 winners did (albu, SpaceNet road detection).

The graph here is the *pixel-stage* graph: nodes carry ``x``/``y`` (pixel coordinates), edges carry
``pts`` (an (N, 2) array from node ``src`` to the other end) and ``length`` (pixels). Every threshold is
in pixels; :mod:`roadseg.roadnet.graph` converts the metre thresholds of ``GraphParams`` first.
"""

from __future__ import annotations

import math
from itertools import count

import networkx as nx
import numpy as np
import shapely
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree
from shapely.geometry import LineString


def polyline_length(pts: np.ndarray) -> float:
    """Length of an (N, 2) polyline; 0 for fewer than two points."""
    return float(np.hypot(*np.diff(pts, axis=0).T).sum()) if len(pts) > 1 else 0.0


def add_edge(g: nx.MultiGraph, u: int, v: int, pts: ArrayLike) -> None:
    """Add an edge whose polyline starts at node ``u`` and ends at node ``v``."""
    pts = np.asarray(pts, dtype=float)
    g.add_edge(u, v, pts=pts, src=u, length=polyline_length(pts))


def oriented(g: nx.MultiGraph, u: int, v: int, k: int) -> np.ndarray:
    """The polyline of edge (u, v, k) running from ``u`` to ``v``."""
    data = g.edges[u, v, k]
    return data["pts"] if data["src"] == u else data["pts"][::-1]


def node_xy(g: nx.MultiGraph, n: int) -> np.ndarray:
    """A node's (x, y) as an array."""
    return np.array([g.nodes[n]["x"], g.nodes[n]["y"]])


def merge_degree2(g: nx.MultiGraph) -> None:
    """Fuse the two edges at every degree-2 node into one (nodes only belong at junctions and ends)."""
    for n in list(g.nodes):
        if g.degree(n) != 2 or g.has_edge(n, n):
            continue
        (_, a, ka), (_, b, kb) = list(g.edges(n, keys=True))
        first = oriented(g, a, n, ka)
        second = oriented(g, n, b, kb)
        g.remove_node(n)
        add_edge(g, a, b, np.vstack([first, second[1:]]))


def contract_short_edges(g: nx.MultiGraph, max_len: float) -> None:
    """Collapse edges shorter than ``max_len`` between distinct nodes (split junction clusters, seams)."""
    while True:
        short = [(u, v, k) for u, v, k, length in g.edges(keys=True, data="length") if u != v and length < max_len]
        if not short:
            return
        for u, v, k in short:
            if not g.has_edge(u, v, k):  # an earlier contraction in this pass re-keyed it
                continue
            keep, drop = (u, v) if g.degree(u) >= g.degree(v) else (v, u)
            g.remove_edge(u, v, k)
            target = node_xy(g, keep)
            for _, w, kw in list(g.edges(drop, keys=True)):
                pts = oriented(g, drop, w, kw).copy()
                g.remove_edge(drop, w, kw)
                pts[0] = target
                if w == drop:  # a loop at the dropped node becomes a loop at the kept one
                    pts[-1] = target
                    w = keep
                add_edge(g, keep, w, pts)
            g.remove_node(drop)


def remove_short_loops(g: nx.MultiGraph, max_len: float) -> None:
    """Self-loops this short are holes in the mask, not roundabouts."""
    for u, _, k, length in list(g.edges(keys=True, data="length")):
        if length < max_len and g.has_edge(u, u, k):
            g.remove_edge(u, u, k)


def remove_spurs(g: nx.MultiGraph, max_len: float) -> None:
    """Drop dead-end edges shorter than ``max_len`` hanging off a junction (skeleton whiskers)."""
    while True:
        spurs = [
            (u, v, k)
            for u, v, k, length in g.edges(keys=True, data="length")
            if length < max_len
            and u != v
            and sorted((g.degree(u), g.degree(v)))[0] == 1
            and max(g.degree(u), g.degree(v)) >= 3
        ]
        if not spurs:
            return
        for u, v, k in spurs:
            if not g.has_edge(u, v, k) or min(g.degree(u), g.degree(v)) != 1 or max(g.degree(u), g.degree(v)) < 3:
                continue
            end = u if g.degree(u) == 1 else v
            g.remove_edge(u, v, k)
            g.remove_node(end)
        remove_isolated(g)
        merge_degree2(g)


def remove_isolated(g: nx.MultiGraph) -> None:
    """Drop nodes left without edges (after spurs or specks were removed)."""
    g.remove_nodes_from([n for n in list(g.nodes) if g.degree(n) == 0])


def end_direction(g: nx.MultiGraph, n: int, look_back: float) -> np.ndarray | None:
    """Unit vector pointing out of a dead end, measured over the last ``look_back`` pixels of its edge."""
    (_, other, k) = next(iter(g.edges(n, keys=True)))
    pts = oriented(g, other, n, k)
    end = pts[-1]
    seg = np.hypot(*(pts - end).T)
    far = np.flatnonzero(seg >= look_back)
    ref = pts[far[-1]] if len(far) else pts[0]
    d = end - ref
    norm = math.hypot(*d)
    return d / norm if norm > 0 else None


def _close_in_graph(g: nx.MultiGraph, a: int, b: int, within: float) -> bool:
    """True when ``b`` is already reachable from ``a`` by a path shorter than ``within``."""
    try:
        return nx.dijkstra_path_length(g, a, b, weight="length") < within
    except nx.NetworkXNoPath:
        return False


def join_gaps(g: nx.MultiGraph, gap: float, new_id: count[int]) -> int:
    """Bridge dead ends that stop within ``gap`` of another road (end-to-end or end-to-edge).

    Returns the number of bridges added.
    """
    ends = [n for n in g.nodes if g.degree(n) == 1]
    if not ends:
        return 0
    edges = list(g.edges(keys=True))
    lines = [LineString(oriented(g, u, v, k)) for u, v, k in edges]
    tree = shapely.STRtree(lines)
    added = 0
    used: set = set()
    for n in ends:
        if n in used or g.degree(n) != 1:
            continue
        p = shapely.Point(node_xy(g, n))
        best = None
        for i in tree.query(p, predicate="dwithin", distance=gap):
            u, v, k = edges[i]
            if n in (u, v) or not g.has_edge(u, v, k):
                continue
            d = lines[i].distance(p)
            if best is None or d < best[0]:
                best = (d, i)
        if best is None:
            continue
        d, i = best
        u, v, k = edges[i]
        line = lines[i]
        at = line.project(p)
        if at <= gap or line.length - at <= gap:  # near an end of that edge: connect to its node
            target = u if at <= line.length - at else v
        else:
            target = next(new_id)
            cut = line.interpolate(at)
            pts = np.asarray(line.coords)
            along = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
            j = int(np.searchsorted(along, at))
            g.add_node(target, x=cut.x, y=cut.y)
            g.remove_edge(u, v, k)
            add_edge(g, u, target, np.vstack([pts[:j], [[cut.x, cut.y]]]))
            add_edge(g, target, v, np.vstack([[[cut.x, cut.y]], pts[j:]]))
        if target in used or _close_in_graph(g, n, target, 3 * gap):
            continue
        add_edge(g, n, target, [node_xy(g, n), node_xy(g, target)])
        used.update((n, target))
        added += 1
    return added


def join_collinear(g: nx.MultiGraph, max_gap: float, max_angle_deg: float, look_back: float) -> int:
    """Bridge pairs of dead ends that point at each other (a road interrupted by a tree or shadow)."""
    ends = [n for n in g.nodes if g.degree(n) == 1]
    if len(ends) < 2:
        return 0
    xy = np.array([node_xy(g, n) for n in ends])
    dirs = {n: end_direction(g, n, look_back) for n in ends}
    cos_max = math.cos(math.radians(max_angle_deg))
    pairs = []
    for i, j in cKDTree(xy).query_pairs(max_gap):
        a, b = ends[i], ends[j]
        if dirs[a] is None or dirs[b] is None:
            continue
        v = xy[j] - xy[i]
        dist = math.hypot(*v)
        if dist == 0:
            continue
        v = v / dist
        if float(dirs[a] @ v) >= cos_max and float(dirs[b] @ -v) >= cos_max:
            pairs.append((dist, a, b))
    added = 0
    used: set = set()
    for dist, a, b in sorted(pairs, key=lambda t: t[0]):
        if a in used or b in used or _close_in_graph(g, a, b, 3 * dist):
            continue
        add_edge(g, a, b, [node_xy(g, a), node_xy(g, b)])
        used.update((a, b))
        added += 1
    return added


def remove_small_components(g: nx.MultiGraph, min_len: float) -> None:
    """Drop connected pieces whose total road length is below ``min_len`` (specks of false positives)."""
    component = {n: i for i, comp in enumerate(nx.connected_components(g)) for n in comp}
    totals: dict[int, float] = {}
    for u, _, length in g.edges(data="length"):
        totals[component[u]] = totals.get(component[u], 0.0) + length
    g.remove_nodes_from([n for n, i in component.items() if totals.get(i, 0.0) < min_len])


def simplify(g: nx.MultiGraph, tolerance: float) -> None:
    """Douglas-Peucker each polyline (end points are kept, so topology is unchanged)."""
    if tolerance <= 0:
        return
    for _, _, data in g.edges(data=True):
        if len(data["pts"]) > 2:
            data["pts"] = np.asarray(LineString(data["pts"]).simplify(tolerance).coords)
            data["length"] = polyline_length(data["pts"])
