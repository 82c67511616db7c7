"""Read road graphs from files: our GeoJSON, any road-line GeoJSON/GeoPackage, and networkx gpickles.

Gpickles come from other tools (the reference APLS data was pickled by networkx 1.x/2.x with shapely
1.x geometries), so loading is defensive: old networkx attribute layouts are rebuilt, geometries may be
shapely objects, WKT strings or absent (straight node-to-node lines), and the CRS may be a PROJ dict.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import networkx as nx
import shapely.wkt
from pyproj import CRS
from shapely.geometry import LineString

from roadseg.errors import InvalidInput
from roadseg.geo import crs_string, line_length_m
from roadseg.roadnet.graph import graph_from_geojson


def _rebuild_old_networkx(obj: nx.Graph) -> nx.Graph:
    """Rebuild a current graph from a networkx 1.x pickle, which keeps ``node``/``adj``, not ``_node``/``_adj``."""
    state = obj.__dict__
    multi = isinstance(obj, nx.MultiGraph)
    g = nx.MultiGraph() if multi else nx.Graph()
    g.graph.update(state.get("graph", {}))
    for n, data in state.get("node", state.get("_node", {})).items():
        g.add_node(n, **data)
    for u, nbrs in state.get("adj", state.get("_adj", {})).items():
        for v, payload in nbrs.items():
            if multi:
                for k, data in payload.items():
                    if not g.has_edge(u, v, k):
                        g.add_edge(u, v, key=k, **data)
            elif not g.has_edge(u, v):
                g.add_edge(u, v, **payload)
    return g


def load_gpickle(path: str | Path) -> nx.MultiGraph:
    """Load a networkx gpickle (any era) and normalise it to our conventions (see :func:`normalize_graph`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shapely warns about unpickling 1.x geometries
        with open(path, "rb") as f:
            obj = pickle.load(f)  # noqa: S301 - the user asked to read this pickle
    if not isinstance(obj, nx.Graph):
        raise InvalidInput(f"{path}: not a networkx graph pickle")
    if "_adj" not in obj.__dict__:
        obj = _rebuild_old_networkx(obj)
    return normalize_graph(obj)


def _crs_of(graph_attrs: dict) -> str | None:
    crs = graph_attrs.get("crs")
    if crs is None or crs == "":
        return None
    try:
        return crs_string(CRS.from_dict(crs) if isinstance(crs, dict) else CRS.from_user_input(crs))
    except Exception as exc:  # pyproj raises several types
        raise InvalidInput(f"unreadable graph CRS {crs!r}: {exc}") from exc


def normalize_graph(src: nx.Graph) -> nx.MultiGraph:
    """A MultiGraph with node ``x``/``y``, edge ``geometry`` and ``length_m`` (or ``length_px``)."""
    crs = _crs_of(src.graph)
    g = nx.MultiGraph(crs=crs, transform=None, units="m" if crs else "px", pixel_size_m=None)
    for n, data in src.nodes(data=True):
        if "x" not in data or "y" not in data:
            raise InvalidInput(f"node {n!r} has no x/y coordinates")
        g.add_node(n, x=float(data["x"]), y=float(data["y"]))
    if src.is_multigraph():
        edges = src.edges(keys=True, data=True)
    else:
        edges = ((u, v, 0, d) for u, v, d in src.edges(data=True))
    for u, v, _, data in edges:
        geom = data.get("geometry")
        if isinstance(geom, str):
            geom = shapely.wkt.loads(geom)
        if geom is None or geom.is_empty:
            geom = LineString([(g.nodes[u]["x"], g.nodes[u]["y"]), (g.nodes[v]["x"], g.nodes[v]["y"])])
        attrs = {"geometry": geom}
        if crs:
            attrs["length_m"] = line_length_m(geom, crs)
        else:
            attrs["length_px"] = geom.length
        g.add_edge(u, v, **attrs)
    return g


def load_graph(path: str | Path) -> nx.MultiGraph:
    """Load a road graph from .geojson/.json, .gpkg/.shp (road lines) or .gpickle/.pkl."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    if suffix in (".gpickle", ".pkl", ".pickle"):
        return load_gpickle(path)
    if suffix in (".geojson", ".json"):
        try:
            return graph_from_geojson(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}: invalid JSON: {exc}") from exc
    if suffix in (".gpkg", ".shp", ".fgb"):
        import geopandas as gpd

        frame = gpd.read_file(path)
        fc = json.loads(frame.to_json())
        fc["roadseg"] = {"crs": crs_string(frame.crs) if frame.crs else None}
        return graph_from_geojson(fc)
    raise InvalidInput(f"{path}: unsupported graph file (use GeoJSON, GeoPackage or gpickle)")
