"""Ingest speed and memory: tiling a synthetic GeoTIFF scene into 512 x 512 RGB tiles.

Speed: ``tile_scene`` on an 8000 x 8000 RGB GeoTIFF, in tiles/s and MB/s (source pixels), against
the floor measured in the same run: a plain rasterio loop that reads each window and writes it
as a GeoTIFF with the same compression (no validation, stretch, mask, padding, manifest or
atomic storage writes).

Memory: peak RSS of a fresh process tiling a 4000^2 and a 16000^2 scene (16x the pixels); it
must stay flat because only one window is in memory at a time and GDAL's cache is capped.

    nice .venv/bin/python bench/ingest.py [--size 8000] [--tile-size 512] [--repeat 3] [--rss-sizes 4000 16000]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

BLOCK = 512


def make_scene(path: Path, size: int) -> Path:
    """A tiled, deflate-compressed RGB GeoTIFF with smooth gradients and noise, written block by block."""
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32611",
        "transform": from_origin(600000, 4000000, 0.5, 0.5),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "zlevel": 1,
    }
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, BLOCK):
            for col in range(0, size, BLOCK):
                h, w = min(BLOCK, size - row), min(BLOCK, size - col)
                yy, xx = np.mgrid[row : row + h, col : col + w]
                base = ((xx + yy) * 255 // (2 * size)).astype(np.uint8)
                noise = rng.integers(0, 16, (3, h, w), dtype=np.uint8)
                dst.write(np.stack([base, 255 - base, base // 2]) + noise, window=Window(col, row, w, h))
    return path


def plain_copy(scene: Path, out: Path, tile_size: int) -> int:
    """The floor: read each window with rasterio and write it as a compressed GeoTIFF tile."""
    from roadseg.ingest.tiling import TILE_COMPRESSION

    count = 0
    with rasterio.open(scene) as src:
        for row in range(0, src.height, tile_size):
            for col in range(0, src.width, tile_size):
                window = Window(col, row, min(tile_size, src.width - col), min(tile_size, src.height - row))
                data = src.read(window=window)
                profile = {
                    "driver": "GTiff",
                    "width": data.shape[2],
                    "height": data.shape[1],
                    "count": 3,
                    "dtype": "uint8",
                    "crs": src.crs,
                    "transform": src.window_transform(window),
                    **TILE_COMPRESSION,  # the tiles' own codec, so the floor pays the same encoding
                }
                with rasterio.open(out / f"r{row}_c{col}.tif", "w", **profile) as dst:
                    dst.write(data)
                count += 1
    return count


def ingest(scene: Path, out: Path, tile_size: int) -> int:
    from roadseg.ingest.tiling import TileParams, tile_scene
    from roadseg.storage import LocalStorage

    manifest = tile_scene(LocalStorage(out), "bench", LocalStorage(scene.parent), scene.name, TileParams(tile_size))
    return len(manifest["tiles"])


def best_time(fn, scene: Path, out_root: Path, tile_size: int, repeat: int) -> tuple[int, float]:
    """(tiles, best seconds) over ``repeat`` runs, each into a fresh folder (best: the machine is shared)."""
    best = float("inf")
    for i in range(repeat):
        out = out_root / f"run{i}"
        out.mkdir(parents=True)
        start = time.perf_counter()
        count = fn(scene, out, tile_size)
        best = min(best, time.perf_counter() - start)
        shutil.rmtree(out)
    return count, best


def rss_child(scene: str, out: str, tile_size: int) -> int:
    """Entry point of the subprocess measuring peak memory: tile, then print max RSS in MiB."""
    tiles = ingest(Path(scene), Path(out), tile_size)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tiles": tiles, "peak_rss_mib": peak_mib}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8000, help="edge of the speed-test scene (pixels)")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method (the best is kept)")
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[4000, 16000])
    parser.add_argument("--rss-child", nargs=2, metavar=("SCENE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(*args.rss_child, args.tile_size)

    with tempfile.TemporaryDirectory(prefix="roadseg-bench-") as tmp:
        tmp = Path(tmp)
        scene = make_scene(tmp / "scene.tif", args.size)
        megabytes = args.size * args.size * 3 / 1e6
        base_tiles, base_s = best_time(plain_copy, scene, tmp / "plain", args.tile_size, args.repeat)
        our_tiles, our_s = best_time(ingest, scene, tmp / "ours", args.tile_size, args.repeat)
        print(
            f"scene {args.size}x{args.size} RGB uint8 ({megabytes:.0f} MB of pixels), tiles {args.tile_size}px, "
            f"best of {args.repeat}"
        )
        print(
            f"  plain rasterio window copy: {base_tiles} tiles in {base_s:.2f} s = "
            f"{base_tiles / base_s:.1f} tiles/s, {megabytes / base_s:.1f} MB/s"
        )
        print(
            f"  roadseg tile_scene:         {our_tiles} tiles in {our_s:.2f} s = "
            f"{our_tiles / our_s:.1f} tiles/s, {megabytes / our_s:.1f} MB/s"
        )
        print(f"  ratio roadseg / plain (throughput): {base_s / our_s:.2f}")
        scene.unlink()

        peaks = {}
        for size in args.rss_sizes:
            path = make_scene(tmp / f"rss-{size}.tif", size)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--tile-size",
                    str(args.tile_size),
                    "--rss-child",
                    str(path),
                    str(tmp / f"rss-out-{size}"),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            peaks[size] = result["peak_rss_mib"]
            print(f"  peak RSS tiling {size}x{size} ({result['tiles']} tiles): {result['peak_rss_mib']:.0f} MiB")
            path.unlink()
        if len(peaks) >= 2:
            small, large = min(peaks), max(peaks)
            print(
                f"  peak RSS ratio {large}^2 / {small}^2 ({(large / small) ** 2:.0f}x the pixels): "
                f"{peaks[large] / peaks[small]:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
