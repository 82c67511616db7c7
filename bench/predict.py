"""Prediction throughput and memory: through the API and the CLI versus the bare SavedModel, same run.

    nice -n 10 .venv/bin/python bench/predict.py [--model models/roads] [--size 2000] [--rss-sizes 2000,8000]
    nice -n 10 .venv/bin/python bench/predict.py --image ../shared/data/massachusetts-tiles/val/images/10228660_15.jpg

* **direct**: the SavedModel's ``serving_default`` called on exactly the windows the gateway cuts
  (``ROADSEG_PREDICT_WINDOW``/``_OVERLAP``/``_BATCH``), image already in memory: the model's own cost.
* **cli**: ``roadseg predict IMAGE --out DIR`` wall time, minus the wall time of the same command on a
  64 x 64 image (process start, TensorFlow import, model load), so it is the per-image cost.
* **api**: ``POST /api/v1/predictions`` to a running gateway (uvicorn, synchronous path), after a
  warm-up request: upload, validation, prediction, PNG/GeoTIFF outputs. The road graph is built after
  the answer; the bench polls the record until it is there and reports that time separately.

* **whole**: one bare call of the signature on the whole image (the least a prediction can cost);
  ``roadseg predict`` per image is reported against it.
* **folder**: ``roadseg predict`` over ``--folder-images`` images (copies of ``--image``, else synthetic
  ones of ``--size``) in one process, with ``--jobs 1`` and ``--jobs 2`` (reading and writing overlapping
  the model calls): the per-image cost of a long run, start-up and the model's first call excluded.

``--image`` uses a real image for the throughput comparison instead of a synthetic ``--size`` one (a
synthetic grid vectorizes in no time; real imagery is where the road graph costs).

Throughput is image megapixels per second, and the ratios are against *direct* (or *whole*).
Peak RSS of ``roadseg predict`` (the process, sampled every 20 ms) is measured for each of
``--rss-sizes``: with streaming it should barely grow with the image.

Without ``--model`` it uses the shipped ``models/roads`` or, when absent, exports our DeepLabV3+ with
random weights (same architecture, same compute) to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import rasterio
from rasterio.windows import Window
from service_processes import free_port, start_gateway, wait_http

REPO = Path(__file__).resolve().parents[1]


def synthetic_geotiff(path: Path, size: int) -> Path:
    """Textured ground with a grid of dark roads, written in 512-row blocks (never the whole image).

    1 m pixels: the shipped model's resolution, so the gateway predicts at full resolution like *direct*
    (no resolution matching, which would make the gateway do less work than the baseline).
    """
    rng = np.random.default_rng(0)
    block = rng.integers(120, 220, size=(512, size, 3), dtype=np.uint8)
    for col in range(100, size, 300):
        block[:, col : col + 14] = 45
    block[200:214] = 45
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        tiled=True,
        compress="deflate",
        crs="EPSG:32611",
        transform=rasterio.Affine(1.0, 0, 500000, 0, -1.0, 4000000),
    )
    with rasterio.open(path, "w", **profile) as ds:
        for row in range(0, size, 512):
            rows = min(512, size - row)
            ds.write(np.moveaxis(block[:rows], -1, 0), window=Window(0, row, size, rows))
    return path


def resolve_model(arg: str | None, tmp: Path) -> Path:
    from roadseg.model_versions import latest_version
    from roadseg.trainer.export import export_savedmodel

    if arg:
        return Path(arg)
    shipped = REPO / "models" / "roads"
    if latest_version(shipped) is not None:
        return shipped
    from roadseg.trainer.model import build_deeplabv3plus

    print("no shipped model: exporting DeepLabV3+ (MobileNetV2) with random weights", flush=True)
    model = build_deeplabv3plus(backbone="mobilenetv2", weights=None)
    export_savedmodel(model, tmp / "models" / "1", {"name": "roads", "version": 1, "threshold": 0.5})
    return tmp / "models"


def direct_seconds(version_dir: Path, image_path: Path, window: int, overlap: int, batch: int) -> float:
    """Time of the bare signature calls on the gateway's windows (warm-up call excluded).

    ``window`` is the largest window; the gateway fits it to the image (:func:`windows.fit_window`).
    """
    import tensorflow as tf
    from roadseg.gateway.windows import fit_window, window_starts

    fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    with rasterio.open(image_path) as ds:
        image = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
    h, w = image.shape[:2]
    window_h, window_w = fit_window(h, w, window, overlap)  # what the gateway does with ROADSEG_PREDICT_WINDOW
    win_h, win_w = min(window_h, h), min(window_w, w)
    windows = [(r, c) for r in window_starts(h, window_h, overlap) for c in window_starts(w, window_w, overlap)]
    batches = [
        np.stack([image[r : r + win_h, c : c + win_w] for r, c in windows[i : i + batch]])
        for i in range(0, len(windows), batch)
    ]
    fn(images=tf.constant(batches[0]))
    started = time.perf_counter()
    for b in batches:
        fn(images=tf.constant(b))["probabilities"].numpy()
    return time.perf_counter() - started


def whole_seconds(version_dir: Path, image_path: Path) -> float:
    """One bare call of the signature on the whole image (after a warm-up call of the same shape)."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    with rasterio.open(image_path) as ds:
        image = tf.constant(np.moveaxis(ds.read([1, 2, 3]), 0, -1)[None])
    fn(images=image)
    started = time.perf_counter()
    fn(images=image)["probabilities"].numpy()
    return time.perf_counter() - started


def folder_seconds(images: list[Path], out: Path, model: Path, env: dict[str, str], jobs: int) -> float:
    """Wall seconds of one ``roadseg predict`` over all ``images`` (process start included)."""
    command = [sys.executable, "-m", "roadseg.cli", "predict", *map(str, images), "--out", str(out)]
    return run_measured([*command, "--model", str(model), "--jobs", str(jobs)], env)[0]


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of a command, sampling its RSS every 20 ms."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, peak / 2**20, proc.stdout.read().decode()


def cli(image: Path, out: Path, model: Path, env: dict[str, str]) -> tuple[float, float, str]:
    return run_measured(
        [sys.executable, "-m", "roadseg.cli", "predict", str(image), "--out", str(out), "--model", str(model)], env
    )


def api_seconds(image: Path, warmup: Path, tmp: Path, model: Path, env: dict[str, str]) -> tuple[float, dict]:
    """(seconds of one synchronous prediction request, the server's timings of its stages) after a warm-up.

    The timings include ``roads``, the road graph built after the answer (polled for up to 10 minutes).
    """
    port = free_port()
    with rasterio.open(image) as ds:
        pixels = ds.width * ds.height
    server_env = {
        **env,
        "ROADSEG_STORAGE_URL": (tmp / "storage").as_uri(),
        "ROADSEG_MODEL_DIR": str(model),
        "ROADSEG_AUTH_MODE": "open-local",  # as `make up`; the bench client is on loopback
        "ROADSEG_SYNC_PREDICT_MAX_PIXELS": str(max(pixels, 1024 * 1024)),
    }
    server = start_gateway(server_env, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", server)
        timings = []
        for path in (warmup, image):
            started = time.perf_counter()
            with open(path, "rb") as fh:
                r = httpx.post(f"{url}/api/v1/predictions", files={"file": (path.name, fh)}, timeout=3600)
            r.raise_for_status()
            timings.append((time.perf_counter() - started, r.json()))
        seconds, record = timings[-1]
        for _ in range(3000):
            record = httpx.get(f"{url}{record['links']['self']}", timeout=30).json()
            if record.get("roads") != "pending":
                break
            time.sleep(0.2)
        return seconds, record["timings"]
    finally:
        server.terminate()
        server.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="folder of versions or a SavedModel (default: models/roads or random)")
    parser.add_argument("--size", type=int, default=2000, help="image edge for the throughput comparison")
    parser.add_argument("--rss-sizes", default="2000,8000", help="image edges for the peak-RSS comparison")
    parser.add_argument("--folder-images", type=int, default=4, help="images in the folder run (0: skip it)")
    parser.add_argument("--image", type=Path, help="a real image for the throughput comparison (default: synthetic)")
    args = parser.parse_args()

    from roadseg.config import get_settings
    from roadseg.model_versions import resolve_savedmodel

    settings = get_settings()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryDirectory(prefix="roadseg-bench-") as tmp_name:
        tmp = Path(tmp_name)
        model = resolve_model(args.model, tmp)
        version_dir = resolve_savedmodel(model)
        print(
            f"model {version_dir}; window {settings.predict_window}, overlap {settings.predict_overlap}, "
            f"batch {settings.predict_batch}; {os.cpu_count()} CPUs",
            flush=True,
        )
        image = args.image or synthetic_geotiff(tmp / f"img{args.size}.tif", args.size)
        tiny = synthetic_geotiff(tmp / "tiny.tif", 64)
        warm = synthetic_geotiff(tmp / "warm.tif", 1024)
        with rasterio.open(image) as ds:
            width, height = ds.width, ds.height
        mpx = width * height / 1e6

        direct = direct_seconds(
            version_dir, image, settings.predict_window, settings.predict_overlap, settings.predict_batch
        )
        # Startup: the fastest of three runs on a 64 x 64 image (the first also warms the disk cache).
        startup = min(cli(tiny, tmp / "out", model, env)[0] for _ in range(3))
        cli_wall, _, printed = cli(image, tmp / "out", model, env)
        cli_predict = float(printed.rsplit(" s -> ", 1)[0].rsplit(", ", 1)[1])  # the CLI's own timer
        api_total, api_stages = api_seconds(image, warm, tmp, model, env)

        rows = [
            ("direct SavedModel (same windows)", direct),
            (f"CLI (wall {cli_wall:.1f} s - startup {startup:.1f} s)", cli_wall - startup),
            ("  of which prediction (CLI's own timer)", cli_predict),
            ("API POST /api/v1/predictions (sync)", api_total),
            ("  of which prediction (API record 'timings')", api_stages["predict"]),
        ]
        print(f"\nthroughput on {image.name}, {width} x {height} ({mpx:.1f} Mpx):")
        for name, seconds in rows:
            print(f"  {name:<48} {seconds:7.1f} s  {mpx / seconds:6.2f} Mpx/s  ratio {direct / seconds:5.2f}")
        print("  API stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in api_stages.items() if k != "roads"))
        if "roads" in api_stages:
            print(f"  road graph, built after the answer: {api_stages['roads']:.1f} s")
        whole = whole_seconds(version_dir, image)
        print(f"  {'whole image, one bare call':<48} {whole:7.1f} s  {mpx / whole:6.2f} Mpx/s")
        print(f"  roadseg predict per image vs one bare call on the whole image: {whole / cli_predict:.2f}")

        if args.folder_images:
            if args.image:  # copies of the real image: the model sees what one bare whole-image call saw
                folder = [tmp / f"folder{i}{image.suffix}" for i in range(args.folder_images)]
                for path in folder:
                    path.write_bytes(image.read_bytes())
            else:
                folder = [synthetic_geotiff(tmp / f"folder{i}.tif", args.size) for i in range(args.folder_images)]
            print(f"\n`roadseg predict` over {len(folder)} images of {width} x {height} in one process:")
            one = None
            for jobs in (1, 2):
                seconds = folder_seconds(folder, tmp / f"folder-out{jobs}", model, env, jobs) - startup
                one = one or seconds
                per_image = seconds / len(folder)
                print(
                    f"  --jobs {jobs}: {per_image:6.1f} s per image (startup excluded), speed-up {one / seconds:.2f}, "
                    f"vs one bare whole-image call {whole / per_image:.2f}",
                    flush=True,
                )

        print("\npeak RSS of `roadseg predict`:")
        base = None
        for size in (int(s) for s in args.rss_sizes.split(",")):
            path = synthetic_geotiff(tmp / f"rss{size}.tif", size)
            wall, peak, _ = cli(path, tmp / "rss-out", model, env)
            base = base or peak
            print(
                f"  {size} x {size} ({size * size / 1e6:5.1f} Mpx): peak RSS {peak:7.0f} MiB "
                f"(x{peak / base:.2f}), wall {wall:6.1f} s",
                flush=True,
            )
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
