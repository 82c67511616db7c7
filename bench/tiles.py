"""Map tiles: latency of the gateway's tile route against a direct rio-tiler read of the same tile, one run.

Two scenes of the same synthetic ground (16-bit RGB, 0.5 m, UTM 11N), registered by ingest's own functions
in a fresh local storage: ``mosaic``, a multi-file scene (``--files`` x ``--files`` GeoTIFFs of ``--file-px``
joined by ingest's VRT, what the sharded jobs read), and ``cog``, the same pixels as one Cloud-Optimized
GeoTIFF with overviews (what a prediction's outputs are). The gateway runs as ``make up`` runs it (uvicorn,
open local mode, no model loaded) and is asked for ``--tiles`` random XYZ tiles per zoom over the scene's
interior, zooms ``--zooms``, by one client over HTTP/1.1 keep-alive.

For each tile, in the same process run, it times:

* ``served``: GET /api/v1/scenes/{id}/tiles/image/{z}/{x}/{y}.png (HTTP, auth, the scene's record, rio-tiler
  through our storage, the scene's stretch, PNG);
* ``direct``: ``rio_tiler.io.Reader(path).tile(x, y, z)`` in this process (open, read, warp; no stretch, no PNG).

*Cold* is each tile's first request (nothing of it cached by the server: datasets are opened per request; the
OS page cache holds the files, which were just written), *warm* the same tiles again, *304* a revalidation
with the tile's ETag. Served and direct alternate which goes first, tile by tile. Last line:
``served/direct p50 cold X.XXx warm X.XXx`` for each scene.

    nice .venv/bin/python bench/tiles.py [--files 4] [--file-px 1024] [--tiles 40] [--zooms 15,16,17,18]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import morecantile
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.warp import transform_bounds
from service_processes import free_port, start_gateway, wait_http

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services" / "common"))
TMS = morecantile.tms.get("WebMercatorQuad")
PIXEL_M = 0.5
ORIGIN = (500000.0, 4000000.0)


def write_parts(folder: Path, files: int, size: int) -> list[str]:
    """``files`` x ``files`` 16-bit RGB GeoTIFFs side by side: smooth fields plus dark lines (compressible)."""
    rng = np.random.default_rng(0)
    paths = []
    for row in range(files):
        for col in range(files):
            yy, xx = np.mgrid[0:size, 0:size]
            base = 1500 + 800 * np.sin((xx + col * size) / 90.0) * np.cos((yy + row * size) / 70.0)
            band = (base + rng.integers(0, 200, size=(size, size))).astype(np.uint16)
            band[(yy % 150) < 10] = 300
            band[(xx % 150) < 10] = 300
            path = folder / f"part_r{row}_c{col}.tif"
            transform = rasterio.Affine(
                PIXEL_M, 0, ORIGIN[0] + col * size * PIXEL_M, 0, -PIXEL_M, ORIGIN[1] - row * size * PIXEL_M
            )
            profile = {
                "driver": "GTiff",
                "width": size,
                "height": size,
                "count": 3,
                "dtype": "uint16",
                "crs": "EPSG:32611",
                "transform": transform,
                "tiled": True,
                "compress": "deflate",
            }
            with rasterio.open(path, "w", **profile) as ds:
                ds.write(np.stack([band, band // 2 + 500, band]))
            paths.append(str(path))
    return paths


def register(storage_root: Path, parts: list[str]) -> dict[str, tuple[str, Path]]:
    """Both scenes in the storage the gateway reads: {name: (scene id, file rio-tiler reads directly)}."""
    from roadseg.ingest.scene_jobs import plan_scene, register_scene, scene_id_for
    from roadseg.ingest.tiling import TileParams
    from roadseg.mosaic import build_mosaic
    from roadseg.raster import trusted_mosaics
    from roadseg.storage import LocalStorage

    storage = LocalStorage(storage_root)
    params = TileParams()
    built = build_mosaic(parts)
    scenes = {}
    mosaic_id = scene_id_for("bench:mosaic", params)
    vrt_key = f"scenes/{mosaic_id}/source.vrt"
    storage.write_text(vrt_key, built.xml)
    fields = {"source_key": vrt_key, "filename": vrt_key, "mosaic_files": len(parts)}
    register_scene(storage, mosaic_id, storage, vrt_key, params, **fields)
    plan_scene(storage, mosaic_id)
    scenes["mosaic"] = (mosaic_id, storage.path(vrt_key))

    cog_id = scene_id_for("bench:cog", params)
    cog_key = f"scenes/{cog_id}/source.tif"
    storage.path(cog_key).parent.mkdir(parents=True, exist_ok=True)
    with trusted_mosaics(), rasterio.open(storage.path(vrt_key)) as src:
        rasterio.shutil.copy(src, storage.path(cog_key), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=512)
    register_scene(storage, cog_id, storage, cog_key, params, source_key=cog_key, filename="source.tif")
    plan_scene(storage, cog_id)
    scenes["cog"] = (cog_id, storage.path(cog_key))
    return scenes


def pick_tiles(path: Path, zooms: list[int], count: int) -> list[morecantile.Tile]:
    """``count`` random tiles per zoom lying wholly inside the scene (seeded: the same every run)."""
    with rasterio.open(path) as ds:
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    rnd = random.Random(0)
    tiles = []
    for z in zooms:
        inside = [t for t in TMS.tiles(west, south, east, north, [z]) if _within(t, west, south, east, north)]
        tiles += rnd.sample(inside, min(count, len(inside)))
    return tiles


def _within(tile: morecantile.Tile, west: float, south: float, east: float, north: float) -> bool:
    b = TMS.bounds(tile)
    return b.left >= west and b.right <= east and b.bottom >= south and b.top <= north


def direct(path: Path, tile: morecantile.Tile) -> float:
    """Seconds for rio-tiler to open the file and read the tile (no stretch, no PNG)."""
    from rio_tiler.io import Reader

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no overviews in a multi-file scene's files: the gateway reads the same
        with Reader(str(path)) as reader:
            reader.tile(tile.x, tile.y, tile.z, indexes=(1, 2, 3))
    return time.perf_counter() - started


def served(client: httpx.Client, url: str, etag: str | None = None) -> tuple[float, str]:
    """(seconds, ETag) of one GET of a tile; 304 expected when ``etag`` is given."""
    started = time.perf_counter()
    r = client.get(url, headers={"If-None-Match": etag} if etag else {})
    seconds = time.perf_counter() - started
    if r.status_code != (304 if etag else 200):
        raise SystemExit(f"{url}: {r.status_code} {r.text[:200]}")
    return seconds, r.headers["etag"]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile in milliseconds."""
    return float(np.percentile(values, q)) * 1000


def measure(client: httpx.Client, scene_id: str, path: Path, tiles: list[morecantile.Tile]) -> dict[str, list[float]]:
    """Cold, warm and 304 times of served and direct reads of ``tiles``, alternating which goes first."""
    times: dict[str, list[float]] = {
        k: [] for k in ("served cold", "direct cold", "served warm", "direct warm", "served 304")
    }
    etags = {}
    for phase in ("cold", "warm"):
        for i, tile in enumerate(tiles):
            url = f"/api/v1/scenes/{scene_id}/tiles/image/{tile.z}/{tile.x}/{tile.y}.png"
            order = ("served", "direct") if i % 2 == 0 else ("direct", "served")
            for who in order:
                if who == "served":
                    seconds, etags[tile] = served(client, url)
                else:
                    seconds = direct(path, tile)
                times[f"{who} {phase}"].append(seconds)
    for tile in tiles:
        url = f"/api/v1/scenes/{scene_id}/tiles/image/{tile.z}/{tile.x}/{tile.y}.png"
        times["served 304"].append(served(client, url, etags[tile])[0])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=4, help="files per side of the multi-file scene")
    parser.add_argument("--file-px", type=int, default=1024, help="pixels per side of each file")
    parser.add_argument("--tiles", type=int, default=40, help="random tiles per zoom")
    parser.add_argument("--zooms", default="15,16,17,18", help="zoom levels (0.5 m pixels are zoom 18's)")
    args = parser.parse_args()
    zooms = [int(z) for z in args.zooms.split(",")]

    with tempfile.TemporaryDirectory(prefix="roadseg-bench-tiles-") as tmp:
        root = Path(tmp)
        (root / "parts").mkdir()
        (root / "models").mkdir()
        started = time.perf_counter()
        parts = write_parts(root / "parts", args.files, args.file_px)
        scenes = register(root / "storage", parts)
        side = args.files * args.file_px
        made = time.perf_counter() - started
        size = f"{side} x {side} px ({side * side / 1e6:.1f} Mpx, 16-bit RGB, {PIXEL_M} m)"
        print(f"scene: {args.files}x{args.files} files of {args.file_px} px = {size}, made in {made:.1f} s")

        port = free_port()
        env = {
            **os.environ,
            "ROADSEG_STORAGE_URL": (root / "storage").as_uri(),
            "ROADSEG_AUTH_MODE": "open-local",
            "ROADSEG_MODEL_DIR": str(root / "models"),
            "ROADSEG_SHIPPED_MODEL_DIR": str(root / "models"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        with open(root / "gateway.log", "wb") as log:
            server = start_gateway(env, port, log)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/api/v1/stac/catalog.json", server)
            ratios = []
            with httpx.Client(base_url=base, timeout=60) as client:
                for name, (scene_id, path) in scenes.items():
                    tiles = pick_tiles(path, zooms, args.tiles)
                    times = measure(client, scene_id, path, tiles)
                    print(f"\n{name}: {len(tiles)} tiles over zooms {args.zooms}")
                    print(f"  {'':12} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
                    for label, values in times.items():
                        mean = statistics.mean(values) * 1000
                        print(f"  {label:12} {pct(values, 50):8.1f} {pct(values, 95):8.1f} {mean:8.1f}")
                    cold = pct(times["served cold"], 50) / pct(times["direct cold"], 50)
                    warm = pct(times["served warm"], 50) / pct(times["direct warm"], 50)
                    ratios.append(f"{name}: served/direct p50 cold {cold:.2f}x warm {warm:.2f}x")
            print()
            for line in ratios:
                print(line)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
