"""Shortest route between two points on a road graph.

Each point is snapped to the nearest edge (the edge is split there, virtually: the graph is never
modified, so one graph can serve concurrent requests), then a multi-source/multi-target Dijkstra runs
by edge length, metres when known and pixels otherwise.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any

import networkx as nx
import numpy as np
import shapely
from numpy.typing import ArrayLike
from pyproj import Geod
from shapely.geometry import LineString, Point, mapping
from shapely.ops import substring

from roadseg.errors import RoadsegError
from roadseg.geo import crs_to_pixels, edge_line, pixels_to_crs, to_crs, transform_points
from roadseg.roadnet.graph import weight_key

#: Default snapping radius: metres for georeferenced graphs, pixels otherwise.
DEFAULT_MAX_SNAP = 50.0


class NoRoute(RoadsegError):
    """Both points are on roads, but on roads that do not connect."""

    status_code = 404


class TooFarFromRoad(RoadsegError):
    """A point is farther than ``max_snap`` from every road."""

    status_code = 422


@dataclass
class Snap:
    """Where a point lands on the graph: edge (u, v, k), distance along its geometry from u, and how far."""

    u: Hashable
    v: Hashable
    k: int
    along: float  # in graph weight units from u
    weight: float  # the edge's weight
    point: Point  # the snapped point (graph coordinates)
    distance: float  # point to road, graph weight units
    line: LineString  # edge geometry oriented from u to v


def _to_graph_coords(g: nx.MultiGraph, xy: ArrayLike, point_crs: str | None) -> np.ndarray:
    pt = np.asarray(xy, dtype=float).reshape(1, 2)
    gcrs, transform = g.graph.get("crs"), g.graph.get("transform")
    if point_crs == "pixel":
        return pixels_to_crs(pt, transform)[0] if gcrs is not None or transform is not None else pt[0]
    if point_crs is None or gcrs is None and to_crs(point_crs) is None:
        return pt[0]
    if gcrs is None:
        raise RoadsegError(f"points in {point_crs} need a georeferenced graph; this one is in pixels")
    return transform_points(pt, point_crs, gcrs)[0]


def _from_graph_coords(g: nx.MultiGraph, pts: np.ndarray, point_crs: str | None) -> np.ndarray:
    gcrs, transform = g.graph.get("crs"), g.graph.get("transform")
    if point_crs == "pixel":
        return crs_to_pixels(pts, transform) if transform is not None else pts
    if point_crs is None or gcrs is None:
        return pts
    return transform_points(pts, gcrs, point_crs)


def _scale(g: nx.MultiGraph, u: Hashable, v: Hashable, k: int, line: LineString) -> float:
    """Weight units per geometry unit along this edge (metres per degree, metres per pixel, ...)."""
    w = g.edges[u, v, k][weight_key(g)]
    return w / line.length if line.length > 0 else 1.0


def snap(g: nx.MultiGraph, xy: np.ndarray, tree: shapely.STRtree, edges: list, max_snap: float) -> Snap:
    """Nearest edge to ``xy`` (graph coordinates); TooFarFromRoad beyond ``max_snap`` weight units."""
    p = Point(xy)
    i = int(tree.nearest(p))
    u, v, k = edges[i]
    line = edge_line(g, u, v, k)
    along_geom = line.project(p)
    on = line.interpolate(along_geom)
    scale = _scale(g, u, v, k, line)
    dist = _distance(g, p, on, scale)
    if dist > max_snap:
        unit = "m" if weight_key(g) == "length_m" else "px"
        raise TooFarFromRoad(
            f"point ({xy[0]:.6g}, {xy[1]:.6g}) is {dist:.1f} {unit} from the nearest road "
            f"(max_snap {max_snap:g} {unit})"
        )
    w = g.edges[u, v, k][weight_key(g)]
    return Snap(u, v, k, along_geom * scale, w, on, dist, line)


def _distance(g: nx.MultiGraph, p: Point, on: Point, scale: float) -> float:
    crs = to_crs(g.graph.get("crs"))
    if crs is not None and crs.is_geographic:
        geod = crs.get_geod() or Geod(ellps="WGS84")
        return float(geod.inv(p.x, p.y, on.x, on.y)[2])
    return p.distance(on) * scale


def _dijkstra(
    g: nx.MultiGraph, sources: dict, targets: dict, weight: str
) -> tuple[float, Hashable | None, dict[Hashable, tuple[Hashable, int] | None]]:
    """Multi-source Dijkstra with start offsets; stops once no target can improve. Returns (cost, node, pred)."""
    dist: dict = {}
    pred: dict = {}
    tie = count()
    heap: list[tuple[float, int, Any, Any]] = [(d, next(tie), n, None) for n, d in sources.items()]
    heapq.heapify(heap)
    best = (math.inf, None)
    while heap:
        d, _, n, via = heapq.heappop(heap)
        if n in dist:
            continue
        if d >= best[0]:
            break
        dist[n] = d
        pred[n] = via
        if n in targets and d + targets[n] < best[0]:
            best = (d + targets[n], n)
        for m, keys in g._adj[n].items():  # the raw adjacency dict: views cost ~3x in this hot loop
            if m in dist:
                continue
            for k, data in keys.items():
                heapq.heappush(heap, (d + data[weight], next(tie), m, (n, k)))
    return best[0], best[1], pred


def _path_geometry(
    g: nx.MultiGraph, start: Snap, end: Snap, last: Hashable, pred: dict[Hashable, tuple[Hashable, int] | None]
) -> list:
    """Coordinates from the start snap through the graph nodes to the end snap."""
    chain = []  # edges (a, b, k) from the start side to ``last``
    n = last
    while (step := pred[n]) is not None:
        a, k = step
        chain.append((a, n, k))
        n = a
    chain.reverse()
    first_node = n
    coords: list[tuple[float, ...]] = []
    # start: from the snapped point to the first node along the start edge
    s_len = start.line.length
    s_at = start.along / _scale(g, start.u, start.v, start.k, start.line)
    piece = substring(start.line, s_at, 0.0 if first_node == start.u else s_len)
    coords.extend(piece.coords if piece.geom_type == "LineString" else [piece.coords[0]])
    for a, b, k in chain:
        coords.extend(edge_line(g, a, b, k).coords[1:])
    e_len = end.line.length
    e_at = end.along / _scale(g, end.u, end.v, end.k, end.line)
    piece = substring(end.line, 0.0 if last == end.u else e_len, e_at)
    coords.extend(list(piece.coords)[1:] if piece.geom_type == "LineString" else [])
    return coords


def shortest_route(
    g: nx.MultiGraph,
    start: Sequence[float],
    end: Sequence[float],
    point_crs: str | None = "pixel",
    max_snap: float = DEFAULT_MAX_SNAP,
) -> dict:
    """Shortest road route between ``start`` and ``end`` (x, y pairs).

    ``point_crs``: ``"pixel"`` (image column/row), a CRS such as ``"EPSG:4326"`` (lon, lat), or None for the
    graph's own coordinates. Returns a GeoJSON Feature whose LineString is in ``point_crs`` coordinates, with
    ``length_m`` (or ``length_px`` for plain images), the snap distances and the node path.
    Raises TooFarFromRoad / NoRoute.
    """
    weight = weight_key(g)
    rows = list(g.edges(keys=True, data="geometry"))
    if not rows:
        raise TooFarFromRoad("the graph has no roads")
    edges = [(u, v, k) for u, v, k, _ in rows]
    tree = shapely.STRtree([geom for _, _, _, geom in rows])
    s = snap(g, _to_graph_coords(g, start, point_crs), tree, edges, max_snap)
    t = snap(g, _to_graph_coords(g, end, point_crs), tree, edges, max_snap)
    sources = {s.u: s.along, s.v: s.weight - s.along} if s.u != s.v else {s.u: min(s.along, s.weight - s.along)}
    targets = {t.u: t.along, t.v: t.weight - t.along} if t.u != t.v else {t.u: min(t.along, t.weight - t.along)}
    cost, last, pred = _dijkstra(g, sources, targets, weight)
    same_edge = (s.u, s.v, s.k) == (t.u, t.v, t.k)
    if same_edge and abs(s.along - t.along) <= cost:
        cost = abs(s.along - t.along)
        scale = _scale(g, s.u, s.v, s.k, s.line)
        piece = substring(s.line, s.along / scale, t.along / scale)
        coords = list(piece.coords) if piece.geom_type == "LineString" else [piece.coords[0]] * 2
        nodes: list = []
    elif last is None:
        raise NoRoute("no road connects the two points (they are on separate road networks)")
    else:
        coords = _path_geometry(g, s, t, last, pred)
        nodes = [last]
        while (step := pred[nodes[-1]]) is not None:
            nodes.append(step[0])
        nodes.reverse()
    out = _from_graph_coords(g, np.asarray(coords, dtype=float), point_crs)
    if len(out) < 2:
        out = np.vstack([out, out])
    unit = "length_m" if weight == "length_m" else "length_px"
    props = {
        unit: round(float(cost), 3),
        "snap_distance_start": round(s.distance, 3),
        "snap_distance_end": round(t.distance, 3),
        "nodes": [int(n) if isinstance(n, (int, np.integer)) else str(n) for n in nodes],
        "crs": point_crs if point_crs is not None else g.graph.get("crs"),
    }
    return {"type": "Feature", "geometry": mapping(LineString(out)), "properties": props}
