"""One scene across many workers (issue 16): shards give the same outputs as one process, seams included.

The reference is the chain run in this process, shard after shard: exactly what a lone worker does.
Two real Celery workers (real Redis) then run the same jobs queued; tiles, masks, manifests and
prediction pixels must be identical, and both workers must have done part of the work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.geometry import LineString
from utils.clients import local_client
from utils.gateway import dark_model, road_image, write_geotiff

SIZE = 1024
PIXEL_M = 0.5
ORIGIN = (500000.0, 4000000.0)
SHARDING = {
    "ROADSEG_TILE_SIZE": "256",
    "ROADSEG_SHARD_TILES": "3",  # 16 tiles -> 6 shards
    "ROADSEG_PREDICT_WINDOW": "256",
    "ROADSEG_PREDICT_OVERLAP": "64",
    "ROADSEG_SHARD_WINDOW_ROWS": "2",  # 5 rows of windows -> 3 shards
    "ROADSEG_MATCH_RESOLUTION": "false",
    "ROADSEG_GRAPH_MAX_PIXELS": str(512 * 512),  # the 1024^2 mask's road network is built in shards...
    "ROADSEG_GRAPH_WINDOW": "256",  # ...one per row of 256-px graph windows: 4
}


def _scene(folder: Path) -> tuple[Path, Path]:
    """A georeferenced road image and its road centerlines (GeoPackage, same CRS)."""
    image = write_geotiff(
        folder / "scene.tif", road_image(SIZE, SIZE), transform=(PIXEL_M, 0, ORIGIN[0], 0, -PIXEL_M, ORIGIN[1])
    )
    lines = []
    for offset in range(60, SIZE, 150):
        middle = offset + 6
        y = ORIGIN[1] - PIXEL_M * middle
        x = ORIGIN[0] + PIXEL_M * middle
        lines.append(LineString([(ORIGIN[0], y), (ORIGIN[0] + PIXEL_M * SIZE, y)]))
        lines.append(LineString([(x, ORIGIN[1]), (x, ORIGIN[1] - PIXEL_M * SIZE)]))
    roads = folder / "roads.gpkg"
    gpd.GeoDataFrame({"highway": ["residential"] * len(lines)}, geometry=lines, crs="EPSG:32611").to_file(roads)
    return image, roads


def _env(tmp_path: Path, name: str, redis_url: str) -> dict[str, str]:
    return {
        **SHARDING,
        "ROADSEG_STORAGE_URL": (tmp_path / name).as_uri(),
        "ROADSEG_REDIS_URL": redis_url,
        "ROADSEG_MODEL_DIR": str(dark_model()),
        "ROADSEG_BROKER_VISIBILITY_TIMEOUT": "5",
    }


def _use(env: dict[str, str], monkeypatch):
    from roadseg.config import get_settings
    from roadseg.storage import get_storage

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return get_storage(), get_settings()


def _submit(scene: Path, storage, settings) -> tuple[str, str]:
    """Register the scene and store a prediction job of the same image; returns their ids."""
    from roadseg.gateway.jobs import create_job
    from roadseg.ingest.scene_jobs import register_scene, scene_id_for_uri
    from roadseg.ingest.tiling import TileParams
    from roadseg.storage import split_url

    params = TileParams.from_settings(settings)
    source, key = split_url(scene.as_uri())
    scene_id = scene_id_for_uri(scene.as_uri(), scene.stat().st_size, params)
    register_scene(storage, scene_id, source, key, params, source_url=scene.as_uri())
    with open(scene, "rb") as fh:
        job_id = create_job(storage, fh, "scene.tif", settings).id
    return scene_id, job_id


def _celery_call(env: dict[str, str], task: str, *args: str) -> None:
    """Queue a task the way any client of the broker would (a fresh process, its own settings)."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "roadseg.celery_app",
        "call",
        task,
        "--args",
        json.dumps(list(args)),
    ]
    subprocess.run(command, env={**os.environ, **env}, check=True, capture_output=True, timeout=120)


def _wait(read, what: str, workers, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while (record := read()).status not in ("done", "failed"):
        assert time.monotonic() < deadline, f"{what} still {record.status}: " + workers[0].output()[-3000:]
        time.sleep(0.2)
    assert record.status == "done", record
    return record


def _pixels(storage, key: str) -> np.ndarray:
    with storage.open_raster(key) as ds:
        return ds.read()


@pytest.mark.slow
def test_two_workers_share_every_job_and_match_one_process(tmp_path, redis_url, start_worker, monkeypatch):
    from roadseg.gateway import sharded
    from roadseg.gateway.jobs import prediction_store
    from roadseg.inference.predict import predict_raster
    from roadseg.inference.predictor import EmbeddedPredictor
    from roadseg.inference.road_graph import road_graph_geojson
    from roadseg.ingest.scene_jobs import run_scene, scene_store
    from roadseg.labeler.run import LabelOptions, label_run, prepare_run, run_store

    scene, roads = _scene(tmp_path)
    options = LabelOptions()
    predictor = EmbeddedPredictor(Path(dark_model()))

    # One process, shard after shard: what a single worker does.
    one_env = _env(tmp_path, "one", redis_url)
    one, settings = _use(one_env, monkeypatch)
    scene_id, job_one = _submit(scene, one, settings)
    one_scene = run_scene(one, scene_id)
    run_id = prepare_run(one, scene_id, roads, options).id
    one_labels = label_run(one, run_id)
    pending = sharded.plan_job(job_one, one, predictor, settings)
    assert pending == [0, 1, 2]
    finished = [sharded.run_shard(job_one, i, one, predictor, settings) for i in reversed(pending)]
    assert finished == [False, False, True]  # whichever shard completes the set, not the last index
    sharded.finish_job(job_one, one, predictor, settings)
    # A late duplicate of the last shard (re-delivered after the job finished, its bands already joined and
    # removed) is a no-op: the job stays done.
    assert sharded.run_shard(job_one, 0, one, predictor, settings) is True
    assert not one.list(prediction_store(one).key(job_one, "bands"))
    # A worker killed after marking the job done but before removing the bands: its re-delivery removes them.
    one.write_bytes(sharded.band_key(one, job_one, 0, "mask"), b"left by a killed worker")
    assert sharded.finish_job(job_one, one, predictor, settings).status == "done"
    assert not one.list(prediction_store(one).key(job_one, "bands"))
    assert prediction_store(one).get(job_one).status == "done"
    assert len(one_scene["tiles"]) == 16 and scene_store(one).get(scene_id).shards.count == 6

    # The shards' seams are the whole-image prediction's, bit for bit.
    with rasterio.open(scene) as ds:
        whole = predict_raster(ds, predictor, tmp_path, settings, threshold=0.5)
    with rasterio.open(whole.files["probability"]) as ds:
        whole_probability = ds.read()
    jobs_one = prediction_store(one)
    assert np.array_equal(_pixels(one, jobs_one.key(job_one, "probability.tif")), whole_probability)

    # Two real workers, each consuming every queue.
    two_env = _env(tmp_path, "two", redis_url)
    two, settings = _use(two_env, monkeypatch)
    workers = [start_worker("ingest,label,predict", two_env) for _ in range(2)]
    scene_id_two, job_two = _submit(scene, two, settings)
    assert scene_id_two == scene_id
    _celery_call(two_env, "roadseg.ingest.tile_scene", scene_id)
    _wait(lambda: scene_store(two).get(scene_id), "the scene", workers)
    assert prepare_run(two, scene_id, roads, options).id == run_id
    _celery_call(two_env, "roadseg.labeler.label_scene", run_id)
    _wait(lambda: run_store(two).get(run_id), "the label run", workers)
    _celery_call(two_env, "roadseg.gateway.predict", job_two)
    record = _wait(lambda: prediction_store(two).get(job_two), "the prediction", workers)

    # Identical outputs: the manifest, every tile and mask byte for byte, every prediction pixel.
    assert json.loads(two.read_text(f"scenes/{scene_id}/manifest.json")) == one_scene
    for tile in one_scene["tiles"]:
        assert two.read_bytes(tile["key"]) == one.read_bytes(tile["key"])
    two_labels = json.loads(two.read_text(f"labels/{run_id}/manifest.json"))
    assert two_labels["tiles"] == one_labels["tiles"] and two_labels["counts"] == one_labels["counts"]
    for tile in one_labels["tiles"]:
        assert two.read_bytes(tile["mask_key"]) == one.read_bytes(tile["mask_key"])
    jobs_two = prediction_store(two)
    for name in ("probability.tif", "mask.tif"):
        assert np.array_equal(_pixels(two, jobs_two.key(job_two, name)), _pixels(one, jobs_one.key(job_one, name)))
    assert record.road_fraction == prediction_store(one).get(job_one).road_fraction
    assert record.road_fraction is not None and record.road_fraction > 0.05
    assert record.windows_total == 25 and record.progress == 1.0
    # The bands were joined, then removed: just after the record says done (so that a worker killed in between
    # loses nothing), so the listing is polled, not read once.
    deadline = time.monotonic() + 30
    while leftover := two.list(jobs_two.key(job_two, "bands")):
        assert time.monotonic() < deadline, leftover
        time.sleep(0.2)

    # The road network of the large mask: traced in 4 shards by the workers, merged, equal to one process's.
    deadline = time.monotonic() + 120
    while (record := prediction_store(two).get(job_two)).roads != "ready":
        assert record.roads == "pending" and time.monotonic() < deadline, record
        time.sleep(0.2)
    with one.open_raster(jobs_one.key(job_one, "mask.tif")) as mask:
        expected_roads = json.loads(json.dumps(road_graph_geojson(mask, 10**9, window=256)))
    roads = json.loads(two.read_text(jobs_two.key(job_two, "roads.geojson")))
    assert roads == expected_roads and len(roads["features"]) > 20
    assert "roads.geojson" in record.files

    # The ingested scene predicted where it is (no upload), through the gateway API: COGs, no PNGs, same pixels.
    from roadseg.celery_app import app as celery_app
    from roadseg.gateway.api import create_app

    monkeypatch.setattr(celery_app.conf, "broker_url", two_env["ROADSEG_REDIS_URL"])
    with local_client(create_app(predictor=predictor, storage=two)) as client:
        response = client.post("/api/v1/predictions/scenes", json={"scene_id": scene_id, "tta": "flip"})
        assert response.status_code == 400 and "flip" in response.json()["detail"]  # the test model has no flip
        response = client.post("/api/v1/predictions/scenes", json={"scene_id": scene_id})
        assert response.status_code == 202, response.text
        scene_job = response.json()["id"]
        deadline = time.monotonic() + 240
        while (record := prediction_store(two).get(scene_job)).roads != "ready":
            assert record.status != "failed" and time.monotonic() < deadline, (record.error, record)
            time.sleep(0.2)
        assert record.files == ["mask.tif", "probability.tif", "roads.geojson"] and record.scene_id == scene_id
        probability = _pixels(two, jobs_two.key(scene_job, "probability.tif"))
        assert np.array_equal(probability, _pixels(one, jobs_one.key(job_one, "probability.tif")))
        with two.open_raster(jobs_two.key(scene_job, "mask.tif")) as cog:
            # Cloud-Optimized: tiled, IFDs first; overviews only above 2048 px (this scene is 1024 px).
            assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and cog.profile["tiled"]
            assert cog.overviews(1) == []
        assert client.post("/api/v1/predictions/scenes", json={"scene_id": "nope"}).status_code == 404

    # Both workers took shards (each shard names the process that ran it).
    shard_docs = [k for k in two.list("") if "/shards/" in k and not k.endswith(".progress.json")]
    assert len(shard_docs) == 6 + 6 + 2 * (3 + 4)
    ran_by = {json.loads(two.read_text(key))["worker"] for key in shard_docs}
    assert len(ran_by) >= 2, ran_by


def test_finished_shards_are_not_redone_and_a_lost_shard_is(tmp_path, monkeypatch, redis_url):
    """Re-running a finished shard writes nothing; a shard killed mid-way (no result) redoes only its part."""
    from roadseg.ingest.scene_jobs import finish_scene, plan_scene, run_shard
    from roadseg.labeler.run import LabelOptions, label_run, prepare_run

    scene, roads = _scene(tmp_path)
    storage, settings = _use(_env(tmp_path, "storage", redis_url), monkeypatch)
    scene_id, _ = _submit(scene, storage, settings)
    pending = plan_scene(storage, scene_id)
    assert pending == list(range(6))
    assert [run_shard(storage, scene_id, i) for i in pending] == [False] * 5 + [True]
    manifest = finish_scene(storage, scene_id)
    shard_doc = storage.path(f"scenes/{scene_id}/shards/00002.json")
    stamp = shard_doc.stat().st_mtime_ns
    assert run_shard(storage, scene_id, 2) is True  # finished: nothing redone
    assert shard_doc.stat().st_mtime_ns == stamp

    # A worker killed inside shard 2: its result and its last tile never got written.
    lost_tile = manifest["tiles"][7]
    tile_bytes = storage.read_bytes(lost_tile["key"])
    storage.delete(lost_tile["key"])
    shard_doc.unlink()
    before = {t["key"]: storage.path(t["key"]).stat().st_mtime_ns for t in manifest["tiles"] if t != lost_tile}
    assert plan_scene(storage, scene_id) == [2]
    assert run_shard(storage, scene_id, 2) is True
    assert finish_scene(storage, scene_id) == manifest
    assert storage.read_bytes(lost_tile["key"]) == tile_bytes
    assert before == {k: storage.path(k).stat().st_mtime_ns for k in before}  # no other tile rewritten

    # A label run cut differently (one shard per tile) gives the same masks.
    by_tile = prepare_run(storage, scene_id, roads, LabelOptions(), run_id="per-tile")
    per_tile = label_run(storage, by_tile.id, shard_tiles=1)
    default = label_run(storage, prepare_run(storage, scene_id, roads, LabelOptions()).id)
    assert [t["id"] for t in per_tile["tiles"]] == [t["id"] for t in default["tiles"]]
    keys = ("mask_key", "band_key")
    for a, b in zip(per_tile["tiles"], default["tiles"], strict=True):
        for key in keys:
            assert storage.read_bytes(a[key]) == storage.read_bytes(b[key])
        assert {k: v for k, v in a.items() if k not in keys} == {k: v for k, v in b.items() if k not in keys}
