"""Labeling speed: masks/s on the SpaceNet Vegas scene cut into 256 x 256 tiles.

Compared, in the same run, with the floor: ``rasterio.features.rasterize`` of the same roads
already buffered (once, for the whole scene) into each tile's grid. The ratio shows what the
per-tile work costs on top of rasterizing (spatial query, reprojection to UTM, buffering,
nodata marking); "full" adds the quality checks and the mask GeoTIFF encoding.

    .venv/bin/python bench/label.py [--repeat 5] [--tile-size 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import rasterize

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "spacenet-vegas"


def _rate(fn, tiles, repeat: int) -> float:
    """Best masks/s over ``repeat`` passes (best, because the machine is shared)."""
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for tile in tiles:
            fn(tile)
        best = max(best, len(tiles) / (time.perf_counter() - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tile-size", type=int, default=256)
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} not found", file=sys.stderr)
        return 0

    from roadseg.ingest.tiling import TileParams, tile_scene
    from roadseg.labeler.quality import assess
    from roadseg.labeler.rasterize import TileGrid, metric_crs
    from roadseg.labeler.run import LabelOptions, open_sources, scene_bounds, write_mask_bytes
    from roadseg.labeler.widths import WidthSpec
    from roadseg.storage import LocalStorage

    with tempfile.TemporaryDirectory() as tmp:
        storage = LocalStorage(tmp)
        scene = tile_scene(
            storage,
            "vegas",
            LocalStorage(SHARED),
            "RGB-PanSharpen_AOI_2_Vegas_img0.tif",
            TileParams(tile_size=args.tile_size),
        )
        tiles = []
        for entry in scene["tiles"]:
            with storage.open_raster(entry["key"]) as ds:
                image = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
                tiles.append((TileGrid.from_dataset(ds), ds.dataset_mask() > 0, image, tuple(entry["bounds"])))
        options = LabelOptions(widths=WidthSpec(width_attr="lane_number", lane_width=3.7))
        labeler, _ = open_sources(
            options, SHARED / "AOI_2_Vegas_img0_roads.geojson", None, scene_bounds(scene), scene["crs"]
        )

        # Baseline: the same roads buffered once for the whole scene, then only rasterized per tile.
        roads = labeler.roads
        utm = metric_crs(tiles[0][0])
        half = options.widths.widths(roads) / 2
        buffered = list(roads.geometry.to_crs(utm).buffer(half).to_crs(roads.crs))

        def baseline(tile):
            grid = tile[0]
            return rasterize(
                [(g, 255) for g in buffered],
                out_shape=(grid.height, grid.width),
                transform=grid.transform,
                fill=0,
                dtype="uint8",
            )

        def ours(tile):
            grid, valid, _, bounds = tile
            return labeler.mask(grid, valid, bounds)[0]

        def full(tile):
            grid, valid, image, bounds = tile
            mask = labeler.mask(grid, valid, bounds)[0]
            assess(mask, image, valid, options.quality)
            return write_mask_bytes(mask, grid)

        # Same pixels where the tile has data (ours also marks nodata as ignore); clipping long roads to the
        # tile before buffering may move a vertex by floating-point noise, flipping a pixel on a boundary.
        mismatch = sum(int((ours(t)[t[1]] != baseline(t)[t[1]]).sum()) for t in tiles)
        road = sum(int((baseline(t)[t[1]] == 255).sum()) for t in tiles)
        assert mismatch <= road * 1e-4, f"masks differ from the baseline in {mismatch} pixels"
        with rasterio.Env():  # as a label shard runs its tiles: one GDAL environment for the loop
            base_rate = _rate(baseline, tiles, args.repeat)
            our_rate = _rate(ours, tiles, args.repeat)
            full_rate = _rate(full, tiles, args.repeat)
    print(
        f"tiles: {len(tiles)} of {args.tile_size}x{args.tile_size} px, {len(roads)} road features, "
        f"best of {args.repeat} passes"
    )
    print(f"pixels differing from the baseline: {mismatch} of {road} road pixels")
    print(f"baseline rasterio.features.rasterize (pre-buffered): {base_rate:8.1f} masks/s")
    print(
        f"roadseg labeler mask (query+reproject+buffer+burn): {our_rate:8.1f} masks/s  "
        f"ratio {our_rate / base_rate:.2f}x baseline"
    )
    print(
        f"roadseg labeler full (mask+quality+GeoTIFF encode): {full_rate:8.1f} masks/s  "
        f"ratio {full_rate / base_rate:.2f}x baseline"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
