"""Prediction throughput and memory: through the API and the CLI versus the bare SavedModel, same run.

    nice -n 10 .venv/bin/python bench/predict.py [--model models/roads] [--size 2000] [--rss-sizes 2000,8000]
    nice -n 10 .venv/bin/python bench/predict.py --image ../shared/data/massachusetts-tiles/val/images/10228660_15.jpg

Every figure is a median of ``--repeat`` runs, and every ratio compares medians of equally many runs
(one pass of 4 model calls varies by +-10 % on a quiet 2-core machine, more than what is compared; the
best of 2n direct passes against the best of n requests would favour the baseline), each path measured
the same way:

* **direct**: the SavedModel's ``serving_default`` called on exactly the windows the gateway cuts
  (``ROADSEG_PREDICT_WINDOW``/``_OVERLAP``/``_BATCH``), image already in memory: the model's own cost.
* **cli**: ``roadseg predict`` in one process (``--jobs 1``) over ``--repeat`` + 1 copies of the image;
  per image is the time between two images' result lines (what each image adds to a long run: process
  start, TensorFlow import, model load and the first image stay out), and the CLI's own per-image timer
  (reading, model, writing the mask) is shown beside it.
* **api**: ``POST /api/v1/predictions`` to a running gateway (uvicorn, synchronous path), after a
  warm-up request: upload, validation, prediction, PNG/GeoTIFF outputs. Each request follows a direct
  pass (a round); its ratio is the median of the rounds' ratios, which keeps the host's slow drifts out.
  The road graph is built after the answer; the bench polls the record until it is there and reports
  that time separately.
* **whole**: one bare call of the signature on the whole image (the least a prediction can cost);
  ``roadseg predict`` per image is reported against it.
* **folder**: the CLI's run over the copies again with ``--jobs 2`` (reading and writing overlapping the
  model calls), against ``--jobs 1`` by the time per image from the first result line to the last
  (two images in flight finish in pairs, so that time covers all but two).

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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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
    from roadseg.trainer.model import build_model

    print("no shipped model: exporting DeepLabV3+ (MobileNetV2) with random weights", flush=True)
    model = build_model(backbone="mobilenetv2", weights=None)
    export_savedmodel(model, tmp / "models" / "1", {"name": "roads", "version": 1, "threshold": 0.5})
    return tmp / "models"


def direct_pass(version_dir: Path, image_path: Path, window: int, overlap: int, batch: int) -> Callable[[], float]:
    """A function timing one pass of the bare signature over the gateway's windows (warmed up already).

    ``window`` is the largest window; the gateway fits it to the image (:func:`windows.fit_window`).
    """
    import tensorflow as tf
    from roadseg.inference.windows import fit_window, window_starts

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

    def one() -> float:
        started = time.perf_counter()
        for b in batches:
            fn(images=tf.constant(b))["probabilities"].numpy()
        return time.perf_counter() - started

    return one


def whole_seconds(version_dir: Path, image_path: Path, repeat: int) -> list[float]:
    """Times of ``repeat`` bare calls of the signature on the whole image (after a warm-up call of the same shape)."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    with rasterio.open(image_path) as ds:
        image = tf.constant(np.moveaxis(ds.read([1, 2, 3]), 0, -1)[None])
    fn(images=image)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(images=image)["probabilities"].numpy()
        times.append(time.perf_counter() - started)
    return times


def cli_run(
    images: list[Path], out: Path, model: Path, env: dict[str, str], jobs: int
) -> tuple[list[float], list[float]]:
    """One ``roadseg predict`` over ``images``: (seconds between consecutive result lines, each image's own timer)."""
    command = [sys.executable, "-m", "roadseg.cli", "predict", *map(str, images), "--out", str(out)]
    _, _, lines = run_measured([*command, "--model", str(model), "--jobs", str(jobs)], env)
    results = [(at, line) for at, line in lines if " s -> " in line]
    own = [float(line.rsplit(" s -> ", 1)[0].rsplit(", ", 1)[1]) for _, line in results]
    return [b[0] - a[0] for a, b in zip(results, results[1:], strict=False)], own


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, list[tuple[float, str]]]:
    """(wall seconds, peak RSS MiB, stdout lines with the second each arrived) of a command.

    Its RSS is sampled every 20 ms; its output is read as it comes, so each line is timed.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda: lines.extend((time.perf_counter(), line) for line in proc.stdout)),
        threading.Thread(target=lambda: errors.extend(proc.stderr)),
    ]
    for reader in readers:
        reader.start()
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    wall = time.perf_counter() - started
    for reader in readers:
        reader.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {''.join(errors)[-2000:]}")
    return wall, peak / 2**20, lines


def api_rounds(
    image: Path, warmup: Path, tmp: Path, model: Path, env: dict[str, str], direct: Callable[[], float], repeat: int
) -> tuple[list[tuple[float, float]], dict]:
    """``repeat`` rounds of (a direct pass, then a synchronous prediction request) after a warm-up request.

    Returns the rounds' (direct seconds, request seconds) and the server's stage timings of the median
    request, including ``roads``, the road graph built after the answer (polled for up to 10 minutes).
    Pairing each request with a direct pass just before it keeps the host's slow drifts out of the ratio.
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

    def request(path: Path) -> tuple[float, dict]:
        started = time.perf_counter()
        with open(path, "rb") as fh:
            r = httpx.post(f"{url}/api/v1/predictions", files={"file": (path.name, fh)}, timeout=3600)
        r.raise_for_status()
        return time.perf_counter() - started, r.json()

    try:
        wait_http(f"{url}/healthz", server)
        request(warmup)
        rounds, records = [], []
        for _ in range(repeat):
            bare = direct()
            seconds, record = request(image)
            rounds.append((bare, seconds))
            records.append(record)
        record = records[sorted(range(repeat), key=lambda i: rounds[i][1])[repeat // 2]]
        for _ in range(3000):
            record = httpx.get(f"{url}{record['links']['self']}", timeout=30).json()
            if record.get("roads") != "pending":
                break
            time.sleep(0.2)
        return rounds, record["timings"]
    finally:
        server.terminate()
        server.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="folder of versions or a SavedModel (default: models/roads or random)")
    parser.add_argument("--size", type=int, default=2000, help="image edge for the throughput comparison")
    parser.add_argument("--rss-sizes", default="2000,8000", help="image edges for the peak-RSS comparison")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path; the median counts (default 3)")
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
            f"batch {settings.predict_batch}; {os.cpu_count()} CPUs; medians of {args.repeat}; "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        image = args.image or synthetic_geotiff(tmp / f"img{args.size}.tif", args.size)
        tiny = synthetic_geotiff(tmp / "tiny.tif", 64)
        warm = synthetic_geotiff(tmp / "warm.tif", 1024)
        with rasterio.open(image) as ds:
            width, height = ds.width, ds.height
        mpx = width * height / 1e6
        copies = [tmp / f"copy{i}{image.suffix}" for i in range(args.repeat + 1)]
        for path in copies:
            path.write_bytes(image.read_bytes())

        window, overlap = settings.predict_window, settings.predict_overlap
        one_pass = direct_pass(version_dir, image, window, overlap, settings.predict_batch)
        median = statistics.median
        direct = [one_pass() for _ in range(args.repeat)]
        cli_run([tiny], tmp / "out", model, env, 1)  # warms the disk cache (Python, TensorFlow, the model)
        cli_gaps, cli_own = cli_run(copies, tmp / "cli", model, env, 1)
        api_pairs, api_stages = api_rounds(image, warm, tmp, model, env, one_pass, args.repeat)
        api_ratio = median(bare / seconds for bare, seconds in api_pairs)

        rows = [
            ("direct SavedModel (same windows)", median(direct), 1.0),
            ("CLI per image (between result lines, --jobs 1)", median(cli_gaps), median(direct) / median(cli_gaps)),
            ("  of which prediction (CLI's own timer)", median(cli_own), median(direct) / median(cli_own)),
            ("API POST /api/v1/predictions (sync)", median(s for _, s in api_pairs), api_ratio),
            (
                "  of which prediction (the median request's 'timings')",
                api_stages["predict"],
                median(bare for bare, _ in api_pairs) / api_stages["predict"],
            ),
        ]
        print(f"\nthroughput on {image.name}, {width} x {height} ({mpx:.1f} Mpx), medians:")
        for name, seconds, ratio in rows:
            print(f"  {name:<56} {seconds:7.2f} s  {mpx / seconds:6.2f} Mpx/s  ratio {ratio:5.2f}")
        print("  direct passes (s): " + ", ".join(f"{t:.2f}" for t in direct))
        print("  CLI per image (s): " + ", ".join(f"{t:.2f}" for t in cli_gaps))
        print("  CLI's own timer per image (s): " + ", ".join(f"{t:.2f}" for t in cli_own))
        print("  API stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in api_stages.items() if k != "roads"))
        print(
            "  API rounds (direct pass, then a request): "
            + ", ".join(f"{bare:.2f}/{seconds:.2f} s" for bare, seconds in api_pairs)
            + f"; ratio: median of the rounds' {api_ratio:.2f}"
        )
        if "roads" in api_stages:
            print(f"  road graph, built after the answer: {api_stages['roads']:.1f} s")
        whole = median(whole_seconds(version_dir, image, args.repeat))
        print(f"  {'whole image, one bare call':<56} {whole:7.2f} s  {mpx / whole:6.2f} Mpx/s")
        print(f"  roadseg predict per image vs one bare call on the whole image: {whole / median(cli_gaps):.2f}")

        # With two images in flight they run side by side and finish in pairs (at 2T, 2T, 4T, 4T, ...): the time
        # from the first result line to the last covers len - jobs images.
        two_gaps, _ = cli_run(copies, tmp / "cli2", model, env, 2)
        one_mean, two_mean = sum(cli_gaps) / (len(copies) - 1), sum(two_gaps) / (len(copies) - 2)
        print(
            f"\n`roadseg predict` over {len(copies)} copies, --jobs 2: {two_mean:.2f} s per image vs "
            f"{one_mean:.2f} s with --jobs 1 (from the first result line to the last): "
            f"speed-up {one_mean / two_mean:.2f}",
            flush=True,
        )

        print("\npeak RSS of `roadseg predict`:")
        base = None
        for size in (int(s) for s in args.rss_sizes.split(",")):
            path = synthetic_geotiff(tmp / f"rss{size}.tif", size)
            wall, peak, _ = run_measured(
                [sys.executable, "-m", "roadseg.cli", "predict", str(path), "--out", str(tmp / "rss-out")]
                + ["--model", str(model)],
                env,
            )
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
