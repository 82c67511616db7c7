"""The ingest API with a real Redis and real Celery workers: uploads, URIs, GCS, a killed worker, bad input.

Scenes are the synthetic stand-ins in tests/data (280 px RGBA uint8 and 200 px uint16, EPSG:4326) and, for
the killed worker, a 1300 px one made at test time (the ``large_vegas`` fixture), long enough to kill.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from rasterio.transform import from_origin
from rasterio.windows import Window
from roadseg.config import get_settings
from roadseg.ingest.api import create_app
from roadseg.ingest.tiling import tile_grid
from roadseg.storage import Storage, get_storage
from utils.clients import local_client
from utils.paths import DATA

VEGAS = DATA / "spacenet-vegas" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
SOLARIS = DATA / "solaris-road-mask" / "road_mask_input.tif"


@pytest.fixture
def ingest_env(settings_env, monkeypatch) -> dict[str, str]:
    """Local storage + Redis, file:// URIs allowed under tests/data, and a short broker re-delivery delay."""
    env = {
        **settings_env,
        "ROADSEG_INGEST_FILE_ROOTS": json.dumps([str(DATA)]),
        "ROADSEG_BROKER_VISIBILITY_TIMEOUT": "3",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    from roadseg.celery_app import app as celery_app

    # The Celery app reads the broker URL when first imported, possibly before this test's environment.
    monkeypatch.setattr(celery_app.conf, "broker_url", env["ROADSEG_REDIS_URL"])
    return env


def submit_file(client: TestClient, path: Path, name: str | None = None, **form) -> dict:
    with open(path, "rb") as fh:
        response = client.post("/api/v1/scenes", files={"file": (name or path.name, fh)}, data=form)
    assert response.status_code == 202, response.text
    return response.json()


def wait_for(client: TestClient, scene_id: str, until, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(f"/api/v1/scenes/{scene_id}").json()
        if until(record):
            return record
        time.sleep(0.02)
    raise AssertionError(f"scene {scene_id} did not reach the expected state: {record}")


def finished(record: dict) -> bool:
    return record["status"] in ("done", "failed")


def assert_tiles_readable(storage: Storage, scene_id: str) -> list[str]:
    """Every listed tile is a complete GeoTIFF (no partial file is ever visible)."""
    keys = storage.list(f"scenes/{scene_id}/tiles")
    for key in keys:
        with storage.open_raster(key) as tile:
            assert tile.read().shape[0] == 3
    return keys


def test_upload_and_uri_are_tiled_by_a_worker(ingest_env, start_worker):
    worker = start_worker("ingest", ingest_env)
    client = local_client(create_app())
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "/api/v1/scenes" in client.get("/openapi.json").json()["paths"]

    accepted = submit_file(client, VEGAS, tile_size="128")
    assert accepted["status"] == "queued"
    record = wait_for(client, accepted["id"], finished)
    assert record["status"] == "done", record
    assert record["tile_count"] == 9 and record["progress"] == {"done": 9, "total": 9}  # 280 px in 3 x 3 tiles
    assert record["crs"] == "EPSG:4326" and record["georeferenced"] is True
    with rasterio.open(VEGAS) as ds:
        assert record["bounds"] == pytest.approx(list(ds.bounds))
        assert record["pixel_size"] == pytest.approx([ds.res[0], ds.res[1]])
    storage = get_storage()
    manifest = json.loads(storage.read_text(record["manifest_key"]))
    assert len(manifest["tiles"]) == 9 and manifest["source_key"] == record["source_key"]

    assert "warm in" not in worker.log_path.read_text(errors="replace")  # only predict workers load the model
    again = submit_file(client, VEGAS, name="renamed.tif", tile_size="128")
    assert again["id"] == accepted["id"] and again["status"] == "done"
    assert len(assert_tiles_readable(storage, accepted["id"])) == 9

    uri = SOLARIS.as_uri()
    by_uri = client.post("/api/v1/scenes", json={"uri": uri, "tile_size": 64})
    assert by_uri.status_code == 202, by_uri.text
    record = wait_for(client, by_uri.json()["id"], finished)
    assert record["status"] == "done" and record["tile_count"] == 16 and record["dtype"] == "uint16"  # 200 px: 4 x 4
    assert not storage.exists(f"scenes/{record['id']}/source")  # read in place, never copied
    listed = client.get("/api/v1/scenes").json()["scenes"]
    assert {s["id"] for s in listed} == {accepted["id"], record["id"]}

    outside = client.post("/api/v1/scenes", json={"uri": "file:///etc/passwd"})
    assert outside.status_code == 400 and "ingest_file_roots" in outside.json()["detail"]
    elsewhere = client.post("/api/v1/scenes", json={"uri": "gs://someone-elses-bucket/scene.tif"})
    assert elsewhere.status_code == 400 and "ingest_gs_buckets" in elsewhere.json()["detail"]


def test_scenes_on_gcs(ingest_env, start_worker, fake_gcs, monkeypatch):
    env = {**ingest_env, "ROADSEG_STORAGE_URL": f"gs://ingest-{uuid.uuid4().hex[:8]}/roadseg"}
    monkeypatch.setenv("ROADSEG_STORAGE_URL", env["ROADSEG_STORAGE_URL"])
    get_settings.cache_clear()
    start_worker("ingest", env)
    client = local_client(create_app())
    accepted = submit_file(client, SOLARIS, tile_size="80")
    record = wait_for(client, accepted["id"], finished)
    assert record["status"] == "done" and record["tile_count"] == 9, record  # 200 px: origins 0, 80, 160
    storage = get_storage()
    assert storage.url.startswith("gs://")
    assert len(assert_tiles_readable(storage, accepted["id"])) == 9
    manifest = json.loads(storage.read_text(record["manifest_key"]))
    assert manifest["dtype"] == "uint16" and manifest["stretch"]["mode"] == "percentile"


def test_killed_worker_leaves_no_partial_tile_and_the_scene_completes(ingest_env, start_worker, large_vegas):
    scene = large_vegas / VEGAS.name
    client = local_client(create_app())
    worker = start_worker("ingest", ingest_env)
    accepted = submit_file(client, scene, tile_size="64")
    scene_id = accepted["id"]
    expected = len(tile_grid(1300, 1300, 64, 0))
    storage = get_storage()
    # Tiles become visible in groups, once on disk (storage.batch): kill once the first group is there.
    record = wait_for(client, scene_id, lambda r: storage.list(f"scenes/{scene_id}/tiles") or finished(r))
    worker.kill()
    killed = time.monotonic()
    assert record["status"] == "running", "the scene finished before the worker could be killed"
    keys_after_kill = assert_tiles_readable(storage, scene_id)
    assert 0 < len(keys_after_kill) < expected
    assert not storage.exists(f"scenes/{scene_id}/manifest.json")

    # A starting worker restores unacknowledged tasks older than the visibility timeout (3 s here).
    time.sleep(max(0.0, 3.5 - (time.monotonic() - killed)))
    start_worker("ingest", ingest_env)
    record = wait_for(client, scene_id, finished, timeout=90)
    assert record["status"] == "done", record
    assert record["tile_count"] == expected
    keys = assert_tiles_readable(storage, scene_id)
    assert len(keys) == expected and set(keys_after_kill) <= set(keys)

    again = submit_file(client, scene, tile_size="64")
    assert again["id"] == scene_id
    assert len(storage.list(f"scenes/{scene_id}/tiles")) == expected


def write_tif(path: Path, width: int, height: int) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        crs="EPSG:32611",
        transform=from_origin(600000, 4000000, 1, 1),
    ) as dst:
        dst.write(np.full((3, height, width), 90, dtype=np.uint8))
    return path


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("truncated", 400, "corrupt or truncated"),
        ("huge", 413, "100000 x 100000"),
        ("not-an-image", 400, "not a readable image"),
        ("empty", 400, "empty"),
        ("passwd", 400, "not a readable image"),
        ("no-file", 400, "exactly one of"),
        ("bad-tile-size", 400, "tile size"),
        ("bad-uri", 400, "unsupported scene URI"),
        ("bad-json", 400, "invalid JSON body"),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_stores_nothing(ingest_env, tmp_path, case, status, message):
    client = local_client(create_app())
    good = write_tif(tmp_path / "good.tif", 300, 300).read_bytes()
    if case == "huge":
        huge = tmp_path / "huge.tif"
        with rasterio.open(
            huge, "w", driver="GTiff", width=100_000, height=100_000, count=3, dtype="uint8", tiled=True, sparse_ok=True
        ) as dst:
            dst.write(np.ones((3, 1, 1), dtype=np.uint8), window=Window(0, 0, 1, 1))
    uploads = {
        "truncated": ("scene.tif", good[: len(good) // 2]),
        "huge": ("huge.tif", (tmp_path / "huge.tif").read_bytes() if case == "huge" else b""),
        "not-an-image": ("notes.tif", b"%PDF-1.4 this is not an image\n" * 100),
        "empty": ("empty.tif", b""),
        "passwd": ("../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n"),
        "bad-tile-size": ("good.tif", good),
    }
    if case in uploads:
        name, content = uploads[case]
        form = {"tile_size": "3"} if case == "bad-tile-size" else {}
        response = client.post("/api/v1/scenes", files={"file": (name, io.BytesIO(content))}, data=form)
    elif case == "bad-uri":
        response = client.post("/api/v1/scenes", data={"uri": "http://example.com/scene.tif"})
    elif case == "bad-json":
        response = client.post("/api/v1/scenes", json={"uri": "gs://b/scene.tif", "tile_size": "big"})
    else:
        response = client.post("/api/v1/scenes", data={})
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert get_storage().list() == []


def test_path_tricks_in_names_never_escape(ingest_env, start_worker, tmp_path):
    start_worker("ingest", ingest_env)
    client = local_client(create_app())
    accepted = submit_file(client, write_tif(tmp_path / "good.tif", 300, 200), name="../../etc/passwd")
    record = wait_for(client, accepted["id"], finished)
    assert record["status"] == "done" and record["filename"] == "passwd"
    assert record["source_key"] == f"scenes/{accepted['id']}/source"
    root = Path(get_storage().root)
    assert all(p.resolve().is_relative_to(root) for p in root.rglob("*"))
    assert client.get("/api/v1/scenes/..%2F..%2Fetc").status_code in (400, 404)


def test_png_without_georeferencing_is_accepted_and_flagged(ingest_env, start_worker, tmp_path):
    start_worker("ingest", ingest_env)
    path = tmp_path / "photo.png"
    with rasterio.open(path, "w", driver="PNG", width=100, height=80, count=3, dtype="uint8") as dst:
        dst.write(np.full((3, 80, 100), 120, dtype=np.uint8))
    client = local_client(create_app())
    accepted = submit_file(client, path, tile_size="64")
    record = wait_for(client, accepted["id"], finished)
    assert record["status"] == "done" and record["georeferenced"] is False and record["crs"] is None
    assert record["bounds"] == [0, 0, 100, 80] and record["pixel_size"] == [1, 1]
    assert record["tile_count"] == 4


def test_upload_over_the_size_limit_is_refused(ingest_env, tmp_path, monkeypatch):
    monkeypatch.setenv("ROADSEG_MAX_UPLOAD_BYTES", "10000")
    get_settings.cache_clear()
    client = local_client(create_app())
    content = write_tif(tmp_path / "big.tif", 300, 300).read_bytes()
    response = client.post("/api/v1/scenes", files={"file": ("big.tif", content)})
    assert response.status_code == 413 and "10000 bytes" in response.json()["detail"]
    assert get_storage().list() == []


def test_a_full_queue_answers_503_with_retry_after_and_keeps_the_scene(settings_env, monkeypatch):
    """Back-pressure: beyond ROADSEG_MAX_QUEUED_TASKS waiting tasks, nothing more is queued."""
    import redis
    from roadseg.config import get_settings
    from roadseg.ingest.scene_jobs import scene_store

    monkeypatch.setenv("ROADSEG_MAX_QUEUED_TASKS", "2")
    get_settings.cache_clear()
    queue = redis.Redis.from_url(settings_env["ROADSEG_REDIS_URL"])
    queue.delete("ingest")
    queue.rpush("ingest", "waiting-1", "waiting-2")  # two tasks nobody is working on yet
    try:
        client = local_client(create_app())
        with open(VEGAS, "rb") as fh:
            r = client.post("/api/v1/scenes", files={"file": ("vegas.tif", fh)})
        assert r.status_code == 503 and r.headers["retry-after"] == "30", r.text
        assert "2 tasks are waiting on the ingest queue (limit 2)" in r.json()["detail"]
        assert queue.llen("ingest") == 2  # nothing was added
        (record,) = scene_store(get_storage()).list()
        assert record.status == "failed" and "limit 2" in str(record.error)  # kept: submitting again queues it
    finally:
        queue.delete("ingest")
