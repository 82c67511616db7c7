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
    tracer = _Tracer(skel, core, origin, window_id)
    tracer.cluster_nodes()
    tracer.trace_from_nodes()
    tracer.trace_seam_chains()
    tracer.trace_loops()
    return tracer.graph


class _Tracer:
    """The state of one :func:`trace_skeleton` call, its steps as methods.

    Pixels are flat indices into the skeleton padded by one pixel (so every pixel has 8 neighbours);
    ``code_of`` maps each skeleton pixel inside the core to its 8-neighbour code.
    """

    def __init__(
        self, skel: np.ndarray, core: tuple[int, int, int, int] | None, origin: tuple[int, int], window_id: int
    ) -> None:
        h, w = skel.shape
        r0, r1, c0, c1 = core if core is not None else (0, h, 0, w)
        self.wp = w + 2
        padded = np.zeros((h + 2, self.wp), dtype=bool)
        padded[1:-1, 1:-1] = skel
        flat = padded.ravel()
        self.flat_offsets = [dr * self.wp + dc for dr, dc in OFFSETS]
        on = np.flatnonzero(flat)
        codes = np.zeros(len(on), dtype=np.uint8)
        for k, off in enumerate(self.flat_offsets):
            codes |= flat[on + off].astype(np.uint8) << k
        rows, cols = np.divmod(on, self.wp)
        in_core = (rows > r0) & (rows <= r1) & (cols > c0) & (cols <= c1)
        self.on, self.codes = on[in_core], codes[in_core]
        self.code_of = dict(zip(self.on.tolist(), self.codes.tolist(), strict=True))
        self.node_of: dict[int, object] = {}
        self.graph = PixelGraph()
        self.origin = origin
        self.window_id = window_id
        self.visited_steps: set[tuple[int, int]] = set()
        self.visited_pixels: set[int] = set()

    def xy(self, fs: list[int]) -> np.ndarray:
        """Global pixel-centre coordinates (x, y) of padded flat indices."""
        r, c = np.divmod(np.asarray(fs), self.wp)
        return np.stack([c - 1 + self.origin[1] + 0.5, r - 1 + self.origin[0] + 0.5], axis=-1)

    def rc(self, f: int) -> tuple[int, int]:
        """Global (row, col) of a padded flat index."""
        r, c = divmod(f, self.wp)
        return r - 1 + self.origin[0], c - 1 + self.origin[1]

    def neighbours(self, f: int) -> list[int]:
        """The skeleton neighbours of pixel ``f``."""
        return [f + self.flat_offsets[k] for k in _BITS[self.code_of[f]]]

    def seam(self, p: int, q: int) -> object:
        """The seam node between pixels p and q (one inside the core, one outside), keyed globally."""
        a, b = sorted((self.rc(p), self.rc(q)))
        key = ("s", a, b)
        self.graph.nodes[key] = tuple(self.xy([p, q]).mean(axis=0).tolist())
        return key

    def cluster_nodes(self) -> None:
        """Junction and end pixels (degree != 2), clustered 8-connectedly into one node per blob."""
        degree = np.unpackbits(self.codes[:, None], axis=1).sum(axis=1)
        node_pixels = self.on[(degree != 2) & (degree > 0)]
        if not len(node_pixels):
            return
        index = {f: i for i, f in enumerate(node_pixels.tolist())}
        pairs = [(i, index[f + off]) for f, i in index.items() for off in self.flat_offsets if f + off in index]
        a, b = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
        adjacency = sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(len(index), len(index)))
        _, labels = connected_components(adjacency, directed=False)
        centres = np.zeros((labels.max() + 1, 2))
        np.add.at(centres, labels, self.xy(node_pixels.tolist()))
        centres /= np.bincount(labels)[:, None]
        for f, lab in zip(node_pixels.tolist(), labels.tolist(), strict=True):
            self.node_of[f] = ("n", self.window_id, lab)
        for lab, (x, y) in enumerate(centres.tolist()):
            self.graph.nodes[("n", self.window_id, lab)] = (x, y)

    def walk(self, start_key: object, prev: int, cur: int) -> None:
        """Follow the chain from step prev->cur until a node pixel or the core border; record the edge."""
        chain: list[int] = []
        self.visited_steps.add((prev, cur))
        while True:
            if cur not in self.code_of:  # left the core: end at the seam between prev and cur
                key = self.seam(prev, cur)
                break
            if cur in self.node_of:
                key = self.node_of[cur]
                self.visited_steps.add((cur, prev))
                break
            chain.append(cur)
            self.visited_pixels.add(cur)
            a, b = self.neighbours(cur)  # chain pixels have exactly two neighbours
            prev, cur = cur, (b if a == prev else a)
        nodes = self.graph.nodes
        points = [nodes[start_key], *(self.xy(chain).tolist() if chain else []), nodes[key]]
        self.graph.edges.append((start_key, key, points))

    def trace_from_nodes(self) -> None:
        """Step 1: every edge that starts at a junction/end cluster."""
        for f, key in self.node_of.items():
            for q in self.neighbours(f):
                if self.node_of.get(q) == key or (f, q) in self.visited_steps:
                    continue
                self.walk(key, f, q)

    def trace_seam_chains(self) -> None:
        """Step 2: chains that enter the core across a seam without meeting a node first."""
        for f in list(self.code_of):
            if f in self.node_of or f in self.visited_pixels:
                continue
            for q in self.neighbours(f):
                if q not in self.code_of and (q, f) not in self.visited_steps and (f, q) not in self.visited_steps:
                    self.walk(self.seam(q, f), q, f)

    def trace_loops(self) -> None:
        """Step 3: closed loops with no node at all; one pixel of each is promoted to a node."""
        for f in list(self.code_of):
            if f in self.node_of or f in self.visited_pixels or self.code_of[f] == 0:
                continue
            key = ("n", self.window_id, -f)
            self.node_of[f] = key
            self.graph.nodes[key] = tuple(self.xy([f])[0].tolist())
            self.walk(key, f, self.neighbours(f)[0])
