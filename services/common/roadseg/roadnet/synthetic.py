"""Synthetic road masks (random straight roads of fixed width) for tests and benchmarks."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.draw import line


def random_road_mask(height: int, width: int, n_roads: int = 30, road_px: int = 7, seed: int = 0) -> np.ndarray:
    """Boolean mask of ``n_roads`` straight roads ``road_px`` wide between random border-to-border points.

    Crossing roads make junctions of degree 3-5, which is what the vectorizer has to get right.
    """
    rng = np.random.default_rng(seed)
    centre = np.zeros((height, width), dtype=bool)
    for _ in range(n_roads):
        r0, r1 = rng.integers(0, height, size=2)
        c0, c1 = rng.integers(0, width, size=2)
        rr, cc = line(int(r0), int(c0), int(r1), int(c1))
        centre[rr, cc] = True
    return ndimage.binary_dilation(centre, iterations=road_px // 2)
