"""Mask -> one-pixel skeleton -> pixel-graph tracing (nodes at junctions and ends, edges as pixel chains).

The tracer is written here (sknw-style) instead of depending on skan/sknw: it is ~150 lines of plain
Python over a dict of 8-neighbour codes, and it knows about *windows*. A window is traced only inside
its ``core`` rectangle; a step that leaves the core ends the edge half-way between the two pixels, at a
*seam node* keyed by the global pixel pair. The neighbouring window produces the same key for the same
step, so merging windows is a dictionary lookup and no edge is counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components
from skimage.morphology import skeletonize

#: (drow, dcol) of the 8 neighbours; bit k of a pixel's code is set when neighbour k is on the skeleton.
OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
_BITS = [[k for k in range(8) if code >> k & 1] for code in range(256)]


def skeletonize_mask(mask: np.ndarray, hole_area_px: int = 0) -> np.ndarray:
    """Thin a boolean road mask to a one-pixel-wide 8-connected skeleton.

    Background pieces smaller than ``hole_area_px`` are filled first because each hole inside a road
    becomes a loop in the skeleton (one labelling pass; faster than skimage's remove_small_holes).
    """
    mask = np.asarray(mask, dtype=bool)
    if hole_area_px > 0:
        labels, _ = ndimage.label(~mask)
        small = np.bincount(labels.ravel()) < hole_area_px
        small[0] = False
        mask = mask | small[labels]
    return skeletonize(mask)


@dataclass
class PixelGraph:
    """Nodes and edges traced from one window, in global pixel coordinates (x = col + 0.5, y = row + 0.5).

    Node keys are ``("n", window, label)`` for junction/end clusters and ``("s", (r, c), (r, c))`` for
    seam nodes; edges are ``(key_u, key_v, points)`` with points running from u to v.
    """

    nodes: dict = field(default_factory=dict)
    edges: list = field(default_factory=list)


def trace_skeleton(
    skel: np.ndarray,
    core: tuple[int, int, int, int] | None = None,
    origin: tuple[int, int] = (0, 0),
    window_id: int = 0,
) -> PixelGraph:
    """Trace a skeleton into a :class:`PixelGraph`.

    ``core`` = (row0, row1, col0, col1) in ``skel`` coordinates: only pixels inside are traced (the rest
    of ``skel`` is overlap that merely gives the right neighbour counts). ``origin`` = global (row, col)
    of ``skel[0, 0]``.
    """
    h, w = skel.shape
    r0, r1, c0, c1 = core if core is not None else (0, h, 0, w)
    wp = w + 2
    padded = np.zeros((h + 2, wp), dtype=bool)
    padded[1:-1, 1:-1] = skel
    flat = padded.ravel()
    flat_offsets = [dr * wp + dc for dr, dc in OFFSETS]
    on = np.flatnonzero(flat)
    codes = np.zeros(len(on), dtype=np.uint8)
    for k, off in enumerate(flat_offsets):
        codes |= flat[on + off].astype(np.uint8) << k
    rows, cols = np.divmod(on, wp)
    in_core = (rows > r0) & (rows <= r1) & (cols > c0) & (cols <= c1)
    on, codes = on[in_core], codes[in_core]
    degree = np.unpackbits(codes[:, None], axis=1).sum(axis=1)
    code_of = dict(zip(on.tolist(), codes.tolist(), strict=True))
    node_of: dict[int, object] = {}
    graph = PixelGraph()
    orow, ocol = origin

    def xy(fs: list[int]) -> np.ndarray:
        """Global pixel-centre coordinates (x, y) of padded flat indices."""
        r, c = np.divmod(np.asarray(fs), wp)
        return np.stack([c - 1 + ocol + 0.5, r - 1 + orow + 0.5], axis=-1)

    def rc(f: int) -> tuple[int, int]:
        r, c = divmod(f, wp)
        return r - 1 + orow, c - 1 + ocol

    def neighbours(f: int) -> list[int]:
        return [f + flat_offsets[k] for k in _BITS[code_of[f]]]

    def seam(p: int, q: int) -> object:
        a, b = sorted((rc(p), rc(q)))
        key = ("s", a, b)
        graph.nodes[key] = tuple(xy([p, q]).mean(axis=0).tolist())
        return key

    # junction/end pixels (degree != 2), clustered 8-connectedly into one node per blob
    node_pixels = on[(degree != 2) & (degree > 0)]
    if len(node_pixels):
        index = {f: i for i, f in enumerate(node_pixels.tolist())}
        pairs = [(i, index[f + off]) for f, i in index.items() for off in flat_offsets if f + off in index]
        a, b = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
        adjacency = sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(len(index), len(index)))
        _, labels = connected_components(adjacency, directed=False)
        centres = np.zeros((labels.max() + 1, 2))
        np.add.at(centres, labels, xy(node_pixels.tolist()))
        centres /= np.bincount(labels)[:, None]
        for f, lab in zip(node_pixels.tolist(), labels.tolist(), strict=True):
            node_of[f] = ("n", window_id, lab)
        for lab, (x, y) in enumerate(centres.tolist()):
            graph.nodes[("n", window_id, lab)] = (x, y)

    visited_steps: set[tuple[int, int]] = set()
    visited_pixels: set[int] = set()

    def walk(start_key: object, prev: int, cur: int) -> None:
        """Follow the chain from step prev->cur until a node pixel or the core border; record the edge."""
        chain: list[int] = []
        visited_steps.add((prev, cur))
        while True:
            if cur not in code_of:  # left the core: end at the seam between prev and cur
                key = seam(prev, cur)
                break
            if cur in node_of:
                key = node_of[cur]
                visited_steps.add((cur, prev))
                break
            chain.append(cur)
            visited_pixels.add(cur)
            a, b = neighbours(cur)  # chain pixels have exactly two neighbours
            prev, cur = cur, (b if a == prev else a)
        points = [graph.nodes[start_key], *(xy(chain).tolist() if chain else []), graph.nodes[key]]
        graph.edges.append((start_key, key, points))

    # 1. edges that start at junction/end clusters
    for f, key in node_of.items():
        for q in neighbours(f):
            if node_of.get(q) == key or (f, q) in visited_steps:
                continue
            walk(key, f, q)
    # 2. chains that enter the core across a seam without meeting a node first
    for f in list(code_of):
        if f in node_of or f in visited_pixels:
            continue
        for q in neighbours(f):
            if q not in code_of and (q, f) not in visited_steps and (f, q) not in visited_steps:
                walk(seam(q, f), q, f)
    # 3. closed loops with no node at all: promote one pixel to a node
    for f in list(code_of):
        if f in node_of or f in visited_pixels or code_of[f] == 0:
            continue
        key = ("n", window_id, -f)
        node_of[f] = key
        graph.nodes[key] = tuple(xy([f])[0].tolist())
        first = neighbours(f)[0]
        walk(key, f, first)
    return graph
