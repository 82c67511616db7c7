"""Load test: concurrent users against the gateway and its prediction worker, with Locust (loopback only).

    nice -n 5 .venv/bin/python bench/load.py [--users 8] [--seconds 60] [--model models/roads]

Starts what ``make up`` starts for predictions, on free loopback ports with a fresh local storage:
redis-server, the gateway (uvicorn, open local mode) and one Celery prediction worker. Then Locust
runs headless for ``--seconds`` with ``--users`` users (bench/locustfile.py: uploads predicted
during the request, larger ones queued and polled, routes, records, the model card, the page).

Reports, per request kind: count, failures, requests/s, p50/p95/p99 in ms (Locust's figures); the
resident memory of the gateway and of the worker (process trees) over time; and whether every
accepted prediction finished (the queue is drained for up to two minutes after the users stop).
Bounded in users and time; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from service_processes import CELERY_WORKER, free_port, start_gateway, tree_rss_mib, wait_http

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sample_rss(pids: dict[str, int], stop: threading.Event, out: list[tuple[float, dict[str, float]]]) -> None:
    started = time.monotonic()
    while not stop.is_set():
        out.append((time.monotonic() - started, {name: tree_rss_mib(pid) for name, pid in pids.items()}))
        stop.wait(1.0)


def stats_rows(prefix: Path) -> list[dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8, help="concurrent users (default 8)")
    parser.add_argument("--spawn-rate", type=float, default=2.0, help="users started per second (default 2)")
    parser.add_argument("--seconds", type=int, default=60, help="how long the users work (default 60)")
    parser.add_argument("--model", default=str(REPO / "models" / "roads"), help="folder of model versions")
    parser.add_argument("--json", type=Path, help="also write the figures to this file (tests read it)")
    args = parser.parse_args()
    if args.users > 64 or args.seconds > 900:
        raise SystemExit("bounded: at most 64 users and 900 seconds")
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise SystemExit("redis-server is not installed (make up installs it)")

    with tempfile.TemporaryDirectory(prefix="roadseg-load-") as tmp_name:
        tmp = Path(tmp_name)
        redis_port, port = free_port(), free_port()
        env = {
            **os.environ,
            "ROADSEG_AUTH_MODE": "open-local",
            "ROADSEG_STORAGE_URL": (tmp / "storage").as_uri(),
            "ROADSEG_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "ROADSEG_MODEL_DIR": args.model,
            "ROADSEG_SYNC_PREDICT_MAX_PIXELS": "300000",  # 256^2 uploads in the request, 640^2 queued
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        logs = {name: open(tmp / f"{name}.log", "wb") for name in ("redis", "gateway", "worker", "locust")}  # noqa: SIM115
        procs: dict[str, subprocess.Popen] = {}
        try:
            procs["redis"] = subprocess.Popen(
                [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=logs["redis"],
                stderr=subprocess.STDOUT,
            )
            procs["gateway"] = start_gateway(env, port, logs["gateway"])
            procs["worker"] = subprocess.Popen(
                [*CELERY_WORKER, "-Q", "predict", "-c", "1", "-n", f"load-{port}@%h", "--loglevel", "WARNING"],
                env=env,
                stdout=logs["worker"],
                stderr=subprocess.STDOUT,
            )
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/healthz", procs["gateway"])
            print(
                f"gateway {url}, model {args.model}; {args.users} users for {args.seconds} s; {os.cpu_count()} CPUs",
                flush=True,
            )

            samples: list[tuple[float, dict[str, float]]] = []
            stop = threading.Event()
            sampler = threading.Thread(
                target=sample_rss,
                args=({"gateway": procs["gateway"].pid, "worker": procs["worker"].pid}, stop, samples),
                daemon=True,
            )
            sampler.start()
            prefix = tmp / "locust"
            locust = [str(BIN / "locust"), "-f", str(REPO / "bench" / "locustfile.py"), "--headless", "--host", url]
            users = ["-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.seconds}s"]
            report = ["--csv", str(prefix), "--only-summary", "--stop-timeout", "30"]
            subprocess.run(
                [*locust, *users, *report],
                env=env,
                stdout=logs["locust"],
                stderr=subprocess.STDOUT,
                check=False,
                timeout=args.seconds + 180,
            )
            finished = drain(tmp / "storage" / "predictions", 120)
            stop.set()
            sampler.join(5)
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for fh in logs.values():
                fh.close()

        rows = stats_rows(prefix)
        print(f"\n{'request':<38} {'count':>6} {'fail':>5} {'req/s':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
        for row in rows:
            print(
                f"{row['Name']:<38} {row['Request Count']:>6} {row['Failure Count']:>5} "
                f"{float(row['Requests/s']):>6.2f} {row['50%']:>7} {row['95%']:>7} {row['99%']:>7}"
            )
        failures = (tmp / "locust_failures.csv").read_text().strip().splitlines()[1:]
        for line in failures[:10]:
            print(f"  failure: {line}")
        print("\nresident memory (MiB), every 10 s:")
        for seconds, rss in samples[::10]:
            print(f"  t={seconds:5.0f} s  " + "  ".join(f"{name} {value:6.0f}" for name, value in rss.items()))
        peak = {name: max(s[1][name] for s in samples) for name in samples[0][1]}
        print("  peak: " + ", ".join(f"{name} {value:.0f}" for name, value in peak.items()))
        print(f"\npredictions accepted and finished: {json.dumps(finished)}")
        if args.json:
            report = {"requests": rows, "failures": failures, "peak_rss_mib": peak, "predictions": finished}
            args.json.write_text(json.dumps(report, indent=1))
    return 0


def drain(folder: Path, seconds: float) -> dict[str, int]:
    """Wait until no stored prediction is queued or running (or ``seconds`` pass); count them by status."""
    deadline = time.monotonic() + seconds
    while True:
        counts: dict[str, int] = {}
        for status_file in folder.glob("*/status.json"):
            try:
                status = json.loads(status_file.read_text())["status"]
            except (OSError, ValueError, KeyError):
                status = "unreadable"
            counts[status] = counts.get(status, 0) + 1
        if not set(counts) - {"done", "failed"} or time.monotonic() > deadline:
            return counts
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
