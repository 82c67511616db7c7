"""Scaling: one synthetic scene through ingest -> label -> predict with 1 and with 2 Celery workers.

Each worker is one process limited to one thread (``-c 1``, ``OMP_NUM_THREADS=1``, ``ROADSEG_TF_THREADS=1``,
``GDAL_NUM_THREADS=1``) and to a CPU of its own (``--no-pin`` lifts that), consuming the three queues, so
the comparison is "one more worker with one more CPU", as on GKE, where each worker requests one CPU.
The scene is large enough for at least 16 shards per job (``ROADSEG_SHARD_TILES``,
``ROADSEG_SHARD_WINDOW_ROWS``). Each stage is timed from the submission to its record saying ``done``;
the prediction is the city path, ``POST /api/v1/predictions/scenes``: the ingested scene read where it is,
``tta=none`` (the page's *fast*), Cloud-Optimized GeoTIFF outputs. Real Redis, real workers, local storage.
Before it, each worker predicts a 512 px corner of the scene: TensorFlow and the model load outside the
timing, as in a predict-only worker, which loads them when it starts.

It prints a table per stage, the per-worker throughput behind the README's sizing table, and last
``scaling 2 workers vs 1: N.NNx`` (the whole chain's time with 1 worker over its time with 2).

    nice .venv/bin/python bench/scale.py [--width 2048] [--height 32768] [--pixel-m 1.0] [--model models/roads]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from service_processes import CELERY_WORKER, free_port, tree_rss_mib

REPO = Path(__file__).resolve().parents[1]
ORIGIN = (500000.0, 4000000.0)
ROAD_EVERY = 150


def make_scene(folder: Path, width: int, height: int, pixel_m: float) -> tuple[Path, Path]:
    """A textured RGB GeoTIFF with dark 12-px roads every 150 px, and their centerlines as a GeoPackage."""
    import geopandas as gpd
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from shapely.geometry import LineString

    image = folder / "scene.tif"
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32611",
        "transform": from_origin(*ORIGIN, pixel_m, pixel_m),
        "tiled": True,
        "compress": "deflate",
    }
    rng = np.random.default_rng(0)
    with rasterio.open(image, "w", **profile) as ds:
        for row in range(0, height, 512):
            rows = min(512, height - row)
            block = rng.integers(150, 220, size=(3, rows, width), dtype=np.uint8)
            for offset in range(60, width, ROAD_EVERY):
                block[:, :, offset : offset + 12] = 40
            for offset in range(60, height, ROAD_EVERY):
                if row <= offset < row + rows:
                    block[:, offset - row : offset - row + 12, :] = 40
            ds.write(block, window=Window(0, row, width, rows))
    left, top = ORIGIN
    right, bottom = left + pixel_m * width, top - pixel_m * height
    xs = [left + pixel_m * (o + 6) for o in range(60, width, ROAD_EVERY)]
    ys = [top - pixel_m * (o + 6) for o in range(60, height, ROAD_EVERY)]
    lines = [LineString([(x, top), (x, bottom)]) for x in xs] + [LineString([(left, y), (right, y)]) for y in ys]
    roads = folder / "roads.gpkg"
    gpd.GeoDataFrame({"highway": ["residential"] * len(lines)}, geometry=lines, crs="EPSG:32611").to_file(roads)
    return image, roads


def corner(image: Path, size: int) -> Path:
    """The image's top-left ``size`` x ``size`` pixels as a GeoTIFF beside it."""
    import rasterio
    from rasterio.windows import Window

    out = image.with_name(f"corner-{size}.tif")
    with rasterio.open(image) as src:
        window = Window(0, 0, size, size)
        profile = {**src.profile, "width": size, "height": size, "transform": src.window_transform(window)}
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return out


#: One process of the bare SavedModel (``tta_none``, one thread) timing 512 px windows: the work a predict
#: worker is made of, without roadseg around it.
BARE_MODEL = """
import sys, time
import numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from roadseg.model_versions import latest_version
root = sys.argv[1]
call = tf.saved_model.load(f"{root}/{latest_version(root)}").signatures["tta_none"]
x = tf.constant(np.random.default_rng(0).integers(0, 255, (1, 512, 512, 3), dtype=np.uint8))
call(images=x)
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # every process starts timing at the same moment
start = time.perf_counter()
for _ in range(int(sys.argv[2])):
    call(images=x)
print(time.perf_counter() - start)
"""


def one_core(index: int, pin: bool) -> Callable[[], None] | None:
    """For ``Popen(preexec_fn=...)``: confine process ``index`` to a CPU of its own (none when not ``pin``).

    Every thread of the process shares that CPU, its helper threads (row read-ahead, band writer, GDAL's
    encoders) included, as in a pod given one CPU on a packed node. Unpinned, a lone worker also runs
    them on the idle second core, which two workers cannot do, and the comparison is no longer one
    more CPU.
    """
    if not pin:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return lambda: os.sched_setaffinity(0, {cpus[index % len(cpus)]})


def bare_model_ceiling(model: str, env: dict[str, str], pin: bool, calls: int = 10) -> float:
    """Windows per second of 2 bare-model processes at once over 1 alone: what this machine allows.

    Two single-thread processes rarely run at twice the speed of one (shared caches, memory bandwidth,
    a host's other tenants), so the chain's scaling is read against this ceiling, measured in the same run.
    """

    def run(count: int) -> list[float]:
        start = str(time.time() + 15)  # after TensorFlow and the model have loaded in each process
        command = [sys.executable, "-c", BARE_MODEL, model, str(calls), start]
        procs = [
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=one_core(i, pin)
            )
            for i in range(count)
        ]
        seconds = []
        for proc in procs:  # TensorFlow's start-up lines are shown only when a process fails
            out, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"bare model process failed:\n{err[-3000:]}")
            seconds.append(float(out.strip().splitlines()[-1]))
        return seconds

    alone, pairs = [], []
    for _ in range(2):  # alternated, the median of each: the machine is shared
        alone.append(run(1)[0])
        pairs.append(max(run(2)))  # the pair's windows/s is set by the slower one
    return 2 * statistics.median(alone) / statistics.median(pairs)


def start_workers(count: int, env: dict[str, str], logs: Path, pin: bool) -> list[subprocess.Popen]:
    """``count`` Celery workers on the ingest, label and predict queues; returns once each says it is ready."""
    procs = []
    quiet = ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    for i in range(count):
        log = logs / f"worker-{count}-{i}.log"
        procs.append(
            subprocess.Popen(
                [*CELERY_WORKER, "-Q", "ingest,label,predict", "-c", "1", "-n", f"scale-{count}-{i}@%h", *quiet],
                env=env,
                stdout=open(log, "wb"),  # noqa: SIM115 - closed with the process
                stderr=subprocess.STDOUT,
                preexec_fn=one_core(i, pin),
            )
        )
    deadline = time.monotonic() + 120
    for i, proc in enumerate(procs):
        log = logs / f"worker-{count}-{i}.log"
        while " ready." not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker {i} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
    return procs


def wait_done(read, what: str, timeout: float) -> float:
    """Seconds until ``read()['status']`` is done (polled every 0.1 s); stops the bench if it fails."""
    start = time.perf_counter()
    while (record := read())["status"] != "done":
        if record["status"] == "failed" or time.perf_counter() - start > timeout:
            raise SystemExit(f"{what}: {record['status']} {record.get('error')}")
        time.sleep(0.1)
    return time.perf_counter() - start


def run_chain(workers: int, image: Path, roads: Path, env: dict[str, str], logs: Path, pin: bool) -> dict[str, float]:
    """The three stages with ``workers`` workers; seconds per stage and shards per job."""
    from roadseg.celery_app import app
    from roadseg.config import get_settings
    from roadseg.gateway.jobs import create_job, create_scene_job, prediction_store
    from roadseg.ingest.scene_jobs import register_scene, scene_id_for_uri, scene_store
    from roadseg.ingest.tiling import TileParams
    from roadseg.labeler.run import LabelOptions, prepare_run, run_store
    from roadseg.storage import split_url, storage_from_url

    storage = storage_from_url(env["ROADSEG_STORAGE_URL"])
    procs = start_workers(workers, env, logs, pin)
    peaks = [0.0] * workers
    stop = threading.Event()

    def sample() -> None:  # peak resident memory of each worker (main process + its pool child)
        while not stop.wait(0.5):
            for i, proc in enumerate(procs):
                peaks[i] = max(peaks[i], tree_rss_mib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        params = TileParams(int(env["ROADSEG_TILE_SIZE"]))
        source, key = split_url(image.as_uri())
        scene_id = scene_id_for_uri(image.as_uri(), image.stat().st_size, params)
        register_scene(storage, scene_id, source, key, params, source_url=image.as_uri())
        app.send_task("roadseg.ingest.tile_scene", [scene_id])
        times = {"ingest": wait_done(lambda: scene_store(storage).get(scene_id), "ingest", 1800)}
        run_id = prepare_run(storage, scene_id, roads, LabelOptions())["id"]
        app.send_task("roadseg.labeler.label_scene", [run_id])
        times["label"] = wait_done(lambda: run_store(storage).get(run_id), "label", 1800)
        # Each worker predicts a small image first: TensorFlow and the model load as a predict-only worker
        # does when it starts (those load before they take a task); a worker that labels must not load it early.
        warm_ups, small = [], corner(image, 512)
        for _ in range(workers):
            with open(small, "rb") as fh:
                warm_ups.append(create_job(storage, fh, "warm-up.tif", get_settings())["id"])
        for job in warm_ups:
            app.send_task("roadseg.gateway.predict", [job])
        for job in warm_ups:
            wait_done(lambda job=job: prediction_store(storage).get(job), "warm-up", 600)
        job_id = create_scene_job(storage, scene_id, tta="none")["id"]  # the scene where it is, as for a city
        app.send_task("roadseg.gateway.predict", [job_id])
        times["predict"] = wait_done(lambda: prediction_store(storage).get(job_id), "predict", 3600)
        times["shards"] = {
            "ingest": scene_store(storage).get(scene_id)["shards"]["count"],
            "label": run_store(storage).get(run_id)["shards"]["count"],
            "predict": prediction_store(storage).get(job_id)["shards"]["count"],
        }
        stop.set()
        sampler.join(5)
        times["peak_rss_mib"] = [round(p) for p in peaks]
        return times
    finally:
        stop.set()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=32768)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument(
        "--pixel-m", type=float, default=1.0, help="ground pixel size; the shipped model resamples to 1 m (default 1.0)"
    )
    parser.add_argument("--shard-tiles", type=int, default=8, help="tiles per ingest/label shard (default 8)")
    parser.add_argument("--shard-rows", type=int, default=2, help="rows of windows per prediction shard (default 2)")
    parser.add_argument("--model", default=str(REPO / "models" / "roads"), help="versions folder (default: shipped)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--logs", type=Path, help="keep the workers' logs in this folder (default: discarded)")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="let each worker use every CPU (default: one CPU each)"
    )
    args = parser.parse_args()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise SystemExit("redis-server is not installed (make up installs it)")

    with tempfile.TemporaryDirectory(prefix="roadseg-scale-") as tmp_name:
        tmp = Path(tmp_name)
        redis_port = free_port()
        env = {
            **os.environ,
            "ROADSEG_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "ROADSEG_MODEL_DIR": args.model,
            "ROADSEG_TILE_SIZE": str(args.tile_size),
            "ROADSEG_SHARD_TILES": str(args.shard_tiles),
            "ROADSEG_SHARD_WINDOW_ROWS": str(args.shard_rows),
            "ROADSEG_TF_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "GDAL_NUM_THREADS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        os.environ["ROADSEG_REDIS_URL"] = env["ROADSEG_REDIS_URL"]  # this process only sends tasks
        redis = subprocess.Popen(
            [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            image, roads = make_scene(tmp, args.width, args.height, args.pixel_m)
            megapixels = args.width * args.height / 1e6
            print(
                f"scene {args.width} x {args.height} ({megapixels:.1f} Mpx), tiles {args.tile_size}, "
                f"{args.shard_tiles} tiles / {args.shard_rows} window rows per shard; model {args.model}; "
                f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
                f"{'one CPU per worker' if args.pin else 'workers unpinned'}",
                flush=True,
            )
            results = {}
            logs = args.logs or tmp
            logs.mkdir(parents=True, exist_ok=True)
            for workers in (1, 2):
                env["ROADSEG_STORAGE_URL"] = (tmp / f"storage-{workers}").as_uri()
                results[workers] = run_chain(workers, image, roads, env, logs, args.pin)
                print(f"{workers} worker(s): {json.dumps(results[workers])}", flush=True)
        finally:
            redis.terminate()
            redis.wait(10)

    one, two = results[1], results[2]
    print(
        f"\nshards per job: {one['shards']}; peak RSS per worker (MiB): {one['peak_rss_mib']} with 1, "
        f"{two['peak_rss_mib']} with 2"
    )
    print(f"{'stage':<8} {'1 worker s':>11} {'2 workers s':>12} {'speed-up':>9} {'Mpx/min per worker':>19}")
    for stage in ("ingest", "label", "predict"):
        rate = megapixels / one[stage] * 60
        print(f"{stage:<8} {one[stage]:>11.1f} {two[stage]:>12.1f} {one[stage] / two[stage]:>8.2f}x {rate:>19.1f}")
    total_one = sum(one[s] for s in ("ingest", "label", "predict"))
    total_two = sum(two[s] for s in ("ingest", "label", "predict"))
    per_worker = megapixels / total_one * 60  # Mpx per minute, whole chain, one single-thread worker
    km2 = per_worker * args.pixel_m**2
    print(f"one worker, whole chain: {per_worker:.1f} Mpx/min = {km2:.3f} km2/min at {args.pixel_m} m pixels")
    ceiling = bare_model_ceiling(args.model, env, args.pin)
    print(f"this machine's ceiling: the bare model in 2 processes vs 1: {ceiling:.2f}x")
    if args.json:
        figures = {
            "one": one,
            "two": two,
            "megapixels": megapixels,
            "pixel_m": args.pixel_m,
            "mpx_per_min_per_worker": per_worker,
            "km2_per_min_per_worker": km2,
            "ceiling": ceiling,
        }
        args.json.write_text(json.dumps(figures, indent=2))
    print(f"scaling 2 workers vs 1: {total_one / total_two:.2f}x")


if __name__ == "__main__":
    main()
