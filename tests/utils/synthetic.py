"""Tiny synthetic road datasets, generated in the test's folder, so trainer tests need no ../shared.

The images look enough like aerial views for a model to have something to learn: dark asphalt
roads of a few pixels' width (straight and diagonal) on a textured green-brown ground, with the
masks the labeler would write (0 background, 255 road).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def road_scene(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 image [size, size, 3] and its 0/255 road mask [size, size]."""
    rng = np.random.default_rng(seed)
    ground = np.array([70, 95, 55], np.float32) + rng.normal(0, 12, (size, size, 3))
    rows, cols = np.mgrid[:size, :size]
    road = np.zeros((size, size), bool)
    for _ in range(2):
        width = rng.integers(3, 7)
        if rng.random() < 0.5:
            offset = rng.integers(0, size - width)
            road |= (cols >= offset) & (cols < offset + width)
        else:
            offset = rng.integers(-size // 2, size // 2)
            road |= np.abs(rows - cols - offset) < width / 2
    image = np.where(road[..., None], np.array([60, 60, 62], np.float32) + rng.normal(0, 4, (size, size, 3)), ground)
    mask = np.where(road, 255, 0).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_road_dataset(root: Path, counts: dict[str, int], size: int = 96) -> Path:
    """A plain folder dataset (``{split}/images/*.png``, ``{split}/masks/*.png``) with ``counts`` per split."""
    for split, count in counts.items():
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, mask = road_scene(size, seed=zlib.crc32(f"{split}{i}".encode()))
            Image.fromarray(image).save(root / split / "images" / f"{split}{i:03d}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{split}{i:03d}.png")
    return root
