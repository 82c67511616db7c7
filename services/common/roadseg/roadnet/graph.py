"""Road mask -> routable road graph (networkx MultiGraph) -> GeoJSON / GeoPackage, and back.

Pipeline: threshold -> fill small holes -> skeletonize (skimage) -> trace junctions/ends/edges
(:mod:`.skeleton`) -> clean (:mod:`.clean`: contract split junctions, drop spurs, bridge gaps and collinear
breaks, drop specks, simplify) -> coordinates in the image CRS with lengths in metres.

Large masks are processed window by window: each window is skeletonized with ``overlap`` pixels of
context, traced only in its core, and the pieces meet at seam nodes that carry the same key on both
sides, so the merged graph equals the whole-image graph (tested).

Output graph conventions (docs/contracts.md §7): nodes have ``x``, ``y`` (CRS or pixel coordinates); edges have
``geometry`` (shapely LineString, same coordinates), ``length_px`` and, when the ground size is known,
``length_m``; ``G.graph`` holds ``crs`` (string or None), ``transform`` (6 floats or None) and ``units``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from itertools import count
from typing import TYPE_CHECKING, cast

import networkx as nx
import numpy as np
from shapely.geometry import LineString, mapping, shape

from roadseg.errors import InvalidInput
from roadseg.geo import crs_string, crs_to_pixels, line_length_m, pixel_size_m, pixels_to_crs, to_crs
from roadseg.roadnet import clean
from roadseg.roadnet.params import GraphParams
from roadseg.roadnet.skeleton import PixelGraph, skeletonize_mask, trace_skeleton

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

log = logging.getLogger(__name__)


def _threshold(block: np.ndarray, threshold: float) -> np.ndarray:
    block = np.asarray(block)
    if block.dtype == bool:
        return block
    if np.issubdtype(block.dtype, np.integer) and block.max(initial=0) > 1:
        return block >= threshold * 255  # 0/255 masks and uint8 probabilities
    return block >= threshold


def _windows(h: int, w: int, size: int) -> list[tuple[int, int, int, int]]:
    rows = list(range(0, h, size))
    cols = list(range(0, w, size))
    return [(r, min(r + size, h), c, min(c + size, w)) for r in rows for c in cols]


def window_count(shape: tuple[int, ...], params: GraphParams) -> int:
    """How many windows :func:`trace_windows` cuts a mask of ``shape`` into (the unit graph shards are cut in)."""
    return len(_windows(shape[0], shape[1], max(params.window, 1)))


def trace_windows(
    mask: np.ndarray | RasterMask,
    params: GraphParams,
    hole_area_px: int,
    indexes: Iterable[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[PixelGraph]:
    """Skeletonize and trace windows ``indexes`` (default: all) of ``mask`` (sliceable as ``mask[r0:r1, c0:c1]``).

    Each piece keys its nodes globally (seam nodes by the pixel pair they sit between), so pieces traced
    in different processes merge into the whole-mask graph (:func:`merge_pieces`).
    """
    h, w = mask.shape[:2]
    size = max(params.window, 1)
    ov = params.overlap if (h > size or w > size) else 0
    windows = _windows(h, w, size)
    chosen = list(range(len(windows)) if indexes is None else indexes)
    pieces = []
    for done, i in enumerate(chosen, 1):
        r0, r1, c0, c1 = windows[i]
        wr0, wr1, wc0, wc1 = max(0, r0 - ov), min(h, r1 + ov), max(0, c0 - ov), min(w, c1 + ov)
        block = _threshold(mask[wr0:wr1, wc0:wc1], params.threshold)
        if block.any():
            skel = skeletonize_mask(block, hole_area_px)
            core = (r0 - wr0, r1 - wr0, c0 - wc0, c1 - wc0)
            pieces.append(trace_skeleton(skel, core=core, origin=(wr0, wc0), window_id=i))
        if progress:
            progress(done, len(chosen))
    return pieces


def merge_pieces(pieces: Iterable[PixelGraph]) -> nx.MultiGraph:
    """The raw pixel-stage MultiGraph (before cleaning) of traced pieces, in order; nodes keyed by integers."""
    g = nx.MultiGraph()
    ids: dict = {}
    for piece in pieces:
        for key, (x, y) in piece.nodes.items():
            if key not in ids:
                ids[key] = len(ids)
                g.add_node(ids[key], x=float(x), y=float(y))
        for u, v, pts in piece.edges:
            clean.add_edge(g, ids[u], ids[v], pts)
    clean.remove_isolated(g)
    return g


def piece_to_json(piece: PixelGraph) -> dict:
    """A traced piece as plain JSON (keys become nested lists; floats round-trip exactly)."""
    return {"nodes": [[key, list(xy)] for key, xy in piece.nodes.items()], "edges": piece.edges}


def piece_from_json(data: dict) -> PixelGraph:
    """The piece :func:`piece_to_json` wrote, with its node keys as tuples again."""

    def key(value: object) -> object:
        return tuple(key(v) for v in value) if isinstance(value, list) else value

    nodes = {key(k): tuple(xy) for k, xy in data["nodes"]}
    return PixelGraph(nodes=nodes, edges=[(key(u), key(v), pts) for u, v, pts in data["edges"]])


class RasterMask:
    """A single-band raster read lazily window by window (so huge masks never sit in memory at once)."""

    def __init__(self, ds: DatasetReader) -> None:
        """Wrap an open single-band dataset; ``shape`` is (rows, cols), as for an array."""
        self.ds = ds
        self.shape = (ds.height, ds.width)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        """Read ``mask[rows, cols]`` (two slices with explicit start and stop) from band 1."""
        from rasterio.windows import Window

        rows, cols = key
        return self.ds.read(1, window=Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start))


def clean_pixel_graph(g: nx.MultiGraph, params: GraphParams, px_m: float) -> None:
    """Apply the cleaning steps with the metre thresholds converted to pixels (``px_m`` metres/pixel)."""
    new_id = count(max(g.nodes, default=-1) + 1)
    clean.merge_degree2(g)
    clean.contract_short_edges(g, params.junction_merge_px)
    clean.remove_short_loops(g, params.loop_m / px_m)
    clean.merge_degree2(g)
    clean.remove_spurs(g, params.spur_m / px_m)
    clean.remove_short_loops(g, params.loop_m / px_m)
    clean.join_gaps(g, params.gap_m / px_m, new_id)
    clean.join_collinear(g, params.collinear_gap_m / px_m, params.collinear_angle_deg, params.direction_m / px_m)
    clean.merge_degree2(g)
    clean.remove_small_components(g, params.min_component_m / px_m)
    clean.simplify(g, params.simplify_m / px_m)


def finalize(g: nx.MultiGraph, transform: Sequence[float] | None, crs: str | None, px_m: float | None) -> nx.MultiGraph:
    """Pixel-stage graph -> output graph in CRS coordinates with lengths (docs/contracts.md §7)."""
    out = nx.MultiGraph(
        crs=crs,
        transform=list(transform) if transform is not None else None,
        units="m" if px_m is not None else "px",
        pixel_size_m=px_m,
    )
    order = sorted(g.nodes, key=lambda n: (g.nodes[n]["y"], g.nodes[n]["x"]))
    new = {n: i for i, n in enumerate(order)}
    for n in order:
        x, y = pixels_to_crs(np.array([g.nodes[n]["x"], g.nodes[n]["y"]]), transform)
        out.add_node(new[n], x=float(x), y=float(y), px=float(g.nodes[n]["x"]), py=float(g.nodes[n]["y"]))
    for u, v, k in g.edges(keys=True):
        a, b = sorted((new[u], new[v]))
        src = u if new[u] == a else v
        pts = clean.oriented(g, src, v if src == u else u, k)
        geom = LineString(pixels_to_crs(pts, transform))
        attrs = {"geometry": geom, "length_px": round(clean.polyline_length(pts), 3)}
        if crs is not None:
            attrs["length_m"] = round(cast(float, line_length_m(geom, crs)), 3)  # a float whenever crs is set
        elif px_m is not None:
            attrs["length_m"] = round(attrs["length_px"] * px_m, 3)
        out.add_edge(a, b, **attrs)
    return out


def mask_to_graph(
    mask: np.ndarray | RasterMask,
    transform: Iterable[float] | None = None,
    crs: object = None,
    params: GraphParams = GraphParams(),
    progress: Callable[[int, int], None] | None = None,
) -> nx.MultiGraph:
    """Vectorize a road mask (bool, 0/255 or probabilities; numpy array or anything sliceable) into a graph.

    ``transform`` is a rasterio Affine (or its first 6 numbers) and ``crs`` anything pyproj understands;
    without them coordinates are pixels (x = column, y = row, pixel centres at +0.5).
    """
    scale = GraphScale.of(mask.shape, transform, crs, params)
    pieces = trace_windows(mask, params, scale.hole_area_px(params), progress=progress)
    return graph_from_pieces(pieces, scale, params)


@dataclass(frozen=True)
class GraphScale:
    """Where a mask lies and how big its pixels are: what every piece and the final graph must agree on."""

    transform: tuple[float, ...] | None
    crs: str | None
    px_m: float | None

    @classmethod
    def of(
        cls, shape: tuple[int, ...], transform: Iterable[float] | None, crs: object, params: GraphParams
    ) -> GraphScale:
        """Checked georeferencing of a mask of ``shape``; pixel size from it (or ``params.pixel_size_m``)."""
        h, w = shape[:2]
        if h == 0 or w == 0:
            raise InvalidInput("empty mask")
        transform = tuple(float(t) for t in tuple(transform)[:6]) if transform is not None else None
        crs = crs_string(crs) if crs is not None else None
        if crs is None:
            return cls(transform, None, params.pixel_size_m)
        if transform is None:
            raise InvalidInput("a CRS needs a transform")
        return cls(transform, crs, pixel_size_m(transform, crs, (h, w)))

    def hole_area_px(self, params: GraphParams) -> int:
        """Holes smaller than this many pixels are filled before skeletonizing."""
        return int(params.hole_area_m2 / (self.px_m or 1.0) ** 2)


def graph_from_pieces(pieces: Iterable[PixelGraph], scale: GraphScale, params: GraphParams) -> nx.MultiGraph:
    """Merge traced pieces (in window order), clean the graph and give it coordinates and lengths."""
    g = merge_pieces(pieces)
    px = scale.px_m or 1.0
    log.info("traced %d nodes, %d edges; cleaning (%.3f m/px)", g.number_of_nodes(), g.number_of_edges(), px)
    clean_pixel_graph(g, params, px)
    return finalize(g, scale.transform, scale.crs, scale.px_m)


def weight_key(g: nx.MultiGraph) -> str:
    """The edge attribute to route and measure by: metres when known, else pixels."""
    return "length_m" if g.graph.get("units") == "m" else "length_px"


def total_length(g: nx.MultiGraph) -> float:
    """Total edge length: metres when the graph knows them, else pixels."""
    key = weight_key(g)
    return float(sum(d for _, _, d in g.edges(data=key)))


def graph_to_geojson(g: nx.MultiGraph) -> dict:
    """One LineString feature per edge (properties ``u``, ``v``, lengths), CRS and transform as members."""
    features = []
    for u, v, k, data in g.edges(keys=True, data=True):
        props = {"u": _json_id(u), "v": _json_id(v), "key": _json_id(k)}
        props.update({a: data[a] for a in ("length_m", "length_px") if a in data})
        features.append({"type": "Feature", "geometry": mapping(data["geometry"]), "properties": props})
    crs = g.graph.get("crs")
    meta = {a: g.graph.get(a) for a in ("crs", "transform", "units", "pixel_size_m")}
    out = {"type": "FeatureCollection", "features": features, "roadseg": meta}
    if crs is not None:  # legacy member that GDAL/QGIS read; CRS84 keeps lon/lat axis order explicit
        name = (
            "urn:ogc:def:crs:OGC:1.3:CRS84"
            if crs == "EPSG:4326"
            else (f"urn:ogc:def:crs:EPSG::{crs.split(':')[1]}" if crs.startswith("EPSG:") else crs)
        )
        out["crs"] = {"type": "name", "properties": {"name": name}}
    return out


def _json_id(n: Hashable) -> int | float | str:
    """Node ids from foreign graphs may be numpy numbers or tuples; JSON needs plain values."""
    if isinstance(n, (int, np.integer)) or (isinstance(n, (float, np.floating)) and float(n).is_integer()):
        return int(n)
    return n if isinstance(n, (str, float)) else str(n)


def _geojson_crs(fc: dict) -> str | None:
    meta = fc.get("roadseg") or {}
    if "crs" in meta:
        return meta["crs"]
    name = ((fc.get("crs") or {}).get("properties") or {}).get("name")
    if name is None:
        return "EPSG:4326"  # RFC 7946: GeoJSON without a crs member is lon/lat
    return crs_string("EPSG:4326" if "CRS84" in name else name)


def graph_from_geojson(fc: dict) -> nx.MultiGraph:
    """Rebuild a graph from GeoJSON LineStrings (ours, or any road lines such as SpaceNet labels).

    Lines are split at every vertex they share with another line (that is where roads meet), nodes are
    the shared vertices and the line ends; lengths are recomputed from the geometry.
    """
    if fc.get("type") != "FeatureCollection":
        raise InvalidInput("expected a GeoJSON FeatureCollection")
    meta = fc.get("roadseg") or {}
    crs = _geojson_crs(fc)
    transform = meta.get("transform")
    lines: list[list[tuple[float, float]]] = []
    for feat in fc.get("features", []):
        geom = shape(feat["geometry"]) if feat.get("geometry") else None
        parts = [geom] if geom is not None and geom.geom_type == "LineString" else getattr(geom, "geoms", [])
        lines.extend([(float(c[0]), float(c[1])) for c in part.coords] for part in parts if len(part.coords) > 1)
    uses: dict[tuple[float, float], int] = {}
    for line in lines:
        for i, c in enumerate(line):
            uses[c] = uses.get(c, 0) + (2 if i in (0, len(line) - 1) else 1)
    px_m = meta.get("pixel_size_m")
    units = "m" if crs is not None or px_m else "px"
    g = nx.MultiGraph(crs=crs, transform=transform, units=units, pixel_size_m=px_m)
    ids: dict[tuple[float, float], int] = {}

    def node(c: tuple[float, float]) -> int:
        if c not in ids:
            ids[c] = len(ids)
            g.add_node(ids[c], x=c[0], y=c[1])
        return ids[c]

    for line in lines:
        start = 0
        for i in range(1, len(line)):
            if i == len(line) - 1 or uses[line[i]] > 1:
                part = LineString(line[start : i + 1])
                if crs is None:
                    attrs = {"geometry": part, "length_px": part.length}
                    if px_m:
                        attrs["length_m"] = part.length * px_m
                else:
                    attrs = {"geometry": part, "length_m": line_length_m(part, crs)}
                    if transform is not None:
                        attrs["length_px"] = _pixel_length(part, transform)
                g.add_edge(node(line[start]), node(line[i]), **attrs)
                start = i
    return g


def _pixel_length(line: LineString, transform: Sequence[float]) -> float:
    """Length in pixels of a CRS line on the raster grid ``transform``."""
    a, b, _, d, e, _ = transform
    return line.length / math.sqrt(abs(a * e - b * d))


def write_gpkg(g: nx.MultiGraph, path: str) -> None:
    """Write the edges as a GeoPackage layer ``roads`` (needs geopandas; imported lazily)."""
    import geopandas as gpd

    rows = [
        {"u": u, "v": v, **{a: d[a] for a in ("length_m", "length_px") if a in d}, "geometry": d["geometry"]}
        for u, v, d in g.edges(data=True)
    ]
    crs = g.graph.get("crs")
    gpd.GeoDataFrame(rows, geometry="geometry", crs=to_crs(crs) if crs else None).to_file(
        path, layer="roads", driver="GPKG"
    )


def graph_to_mask(
    g: nx.MultiGraph, shape: tuple[int, int], transform: Sequence[float] | None = None, width_px: int = 1
) -> np.ndarray:
    """Rasterize the road centrelines onto a grid (``transform`` defaults to the graph's own), as uint8 0/255.

    Used to compare a graph with pixel masks via :mod:`roadseg.metrics` (relaxed precision/recall/F1).
    """
    from rasterio.features import rasterize
    from scipy import ndimage

    transform = transform if transform is not None else g.graph.get("transform")
    shapes = []
    for _, _, geom in g.edges(data="geometry"):
        pix = crs_to_pixels(np.asarray(geom.coords), transform) if transform is not None else np.asarray(geom.coords)
        shapes.append((LineString(pix), 255))
    if not shapes:
        return np.zeros(shape, dtype=np.uint8)
    mask = rasterize(shapes, out_shape=shape, fill=0, dtype="uint8", all_touched=True)
    if width_px > 1:
        mask = ndimage.binary_dilation(mask > 0, iterations=width_px // 2).astype(np.uint8) * 255
    return mask
