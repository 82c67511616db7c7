"""Helpers of the benchmarks that run our services as processes (bench/predict.py, load.py, scale.py).

Not a benchmark itself: running it does nothing.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
#: ``celery worker`` of the package's app from this interpreter's environment; callers add -Q, -c, -n ...
CELERY_WORKER = [str(Path(sys.executable).parent / "celery"), "-A", "roadseg.celery_app", "worker"]


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(env: dict[str, str], port: int, log: IO[bytes] | int = subprocess.DEVNULL) -> subprocess.Popen:
    """The gateway as `make up` runs it (uvicorn on 127.0.0.1), with ``env``; output to ``log``."""
    app = ["--app-dir", str(REPO / "services" / "gateway"), "main:app"]
    argv = [sys.executable, "-m", "uvicorn", *app, "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_http(url: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    """Until ``url`` answers 200; stops the bench with the reason when the process exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the process exited ({proc.returncode})")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds} s")


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn and Celery fork), MiB."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20
