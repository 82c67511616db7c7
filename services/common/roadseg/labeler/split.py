"""Seeded train/val/test split by spatial blocks.

Neighbouring tiles look alike (same roads, same buildings crossing the tile edge); putting one in
train and its neighbour in test inflates test scores. Tiles are therefore grouped into blocks of
``block_tiles x block_tiles`` grid cells per scene and whole blocks are assigned to one split, so
every tile has the split of its block and its neighbours inside the block share it.

Assignment is greedy on a seeded shuffle of the blocks: each block goes to the split furthest
below its target share of tiles, so the fractions hold even with few, unequal blocks, and the
same seed and inputs always give the same split.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from roadseg.errors import InvalidInput
from roadseg.tfrecords import SPLITS

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
_TILE_ID = re.compile(r"^r(\d+)_c(\d+)$")


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/val/test fractions (three, non-negative, summing to 1); returns them as floats."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not abs(sum(fractions) - 1.0) < 1e-6:
        raise InvalidInput(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    first, second, third = (float(f) for f in fractions)
    return first, second, third


def grid_position(tile_id: str) -> tuple[int, int]:
    """(row, col) of a tile id ``r0003_c0007``."""
    match = _TILE_ID.match(tile_id)
    if not match:
        raise InvalidInput(f"not a grid tile id: {tile_id!r}")
    return int(match.group(1)), int(match.group(2))


def block_of(scene_id: str, tile_id: str, block_tiles: int) -> tuple[str, int, int]:
    """The spatial block (scene, block row, block col) a grid tile belongs to."""
    row, col = grid_position(tile_id)
    return (scene_id, row // block_tiles, col // block_tiles)


def assign_groups(
    sizes: dict[Hashable, int], fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> dict[Hashable, str]:
    """Split name for each group (given its number of tiles), filling splits towards their fractions."""
    fractions = check_fractions(fractions)
    keys = sorted(sizes, key=repr)
    order = np.random.default_rng(seed).permutation(len(keys))
    total = sum(sizes.values())
    targets = np.array(fractions) * total
    counts = np.zeros(len(SPLITS))
    result = {}
    for i in order:
        key = keys[i]
        deficit = np.where(targets > 0, targets - counts, -np.inf)
        choice = int(np.argmax(deficit))
        result[key] = SPLITS[choice]
        counts[choice] += sizes[key]
    return result


def split_grid_tiles(
    tiles: Sequence[tuple[str, str]],
    block_tiles: int = 4,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    overlap: int = 0,
) -> dict[tuple[str, str], str | None]:
    """Split for each ``(scene_id, tile_id)``, assigned block by block.

    With overlapping tiles, val/test tiles touching another split are dropped (``None``) because they share
    ``overlap`` pixels with it.
    """
    if block_tiles < 1:
        raise InvalidInput(f"block size must be at least 1 tile, got {block_tiles}")
    sizes: dict[Hashable, int] = defaultdict(int)
    for scene_id, tile_id in tiles:
        sizes[block_of(scene_id, tile_id, block_tiles)] += 1
    by_block = assign_groups(sizes, fractions, seed)
    result: dict[tuple[str, str], str | None] = {(s, t): by_block[block_of(s, t, block_tiles)] for s, t in tiles}
    if overlap > 0:
        result = {key: _guard(key, split, result) for key, split in result.items()}
    return result


def _guard(key: tuple[str, str], split: str | None, splits: dict) -> str | None:
    if split == "train":
        return split
    scene_id, tile_id = key
    row, col = grid_position(tile_id)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            other = splits.get((scene_id, f"r{row + dr:04d}_c{col + dc:04d}"))
            if other is not None and other != split:
                return None
    return split
