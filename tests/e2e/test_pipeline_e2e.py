"""The whole chain through the real services (issue 7), with failure drills.

Real processes only: the ingest, labeler and gateway HTTP services (uvicorn, as ``make up`` runs
them), their Celery workers on a real Redis, storage on the real fake-gcs-server (the GCS code
path), and the trainer as a batch job. Sizes are tiny (two training steps) so it fits a few minutes
on two CPU cores. Drills: a labeler worker is SIGKILLed mid-run and another started; the gateway is
restarted while a prediction runs on its worker. Afterwards no tile, mask or model version is lost
or duplicated.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest
from roadseg.demo_driver import Endpoints, FinetuneParams, Pipeline
from roadseg.model_versions import latest_version
from utils.paths import REPO
from utils.processes import Service

#: In the ``large_vegas`` folder: a 1300 px Vegas-like scene and its roads, made at test time (utils.geodata).
VEGAS = "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
ROADS = "AOI_2_Vegas_img0_roads.geojson"
LANES = {"widths": {"width_attr": "lane_number", "lane_width": 3.7}}
TILE = 128


def _first_model(model_dir: Path) -> None:
    """Version 1 to start from: the shipped model (its latest version), or an untrained one before it exists."""
    shipped = REPO / "models" / "roads"
    if latest_version(shipped) is not None:
        shutil.copytree(shipped / str(latest_version(shipped)), model_dir / "1")
        return
    from roadseg.trainer.export import export_savedmodel
    from roadseg.trainer.model import build_model

    model = build_model("mobilenetv2", weights=None)
    export_savedmodel(model, model_dir / "1", {"name": "roads", "version": 1})


@pytest.fixture
def stack(large_vegas, fake_gcs, redis_url, tmp_path, start_worker, monkeypatch):
    """Every service and worker of the stack, storage on fake-gcs-server; yields (pipeline, env, services)."""
    from roadseg.config import get_settings

    model_dir = tmp_path / "models" / "roads"
    model_dir.mkdir(parents=True)
    _first_model(model_dir)
    env = {
        "ROADSEG_STORAGE_URL": f"gs://e2e-{uuid.uuid4().hex[:8]}/roadseg",
        "ROADSEG_REDIS_URL": redis_url,
        "STORAGE_EMULATOR_HOST": fake_gcs,
        "ROADSEG_MODEL_DIR": str(model_dir),
        "ROADSEG_BROKER_VISIBILITY_TIMEOUT": "5",  # a killed worker's task comes back after 5 s
        "ROADSEG_SYNC_PREDICT_MAX_PIXELS": str(512 * 512),  # the 1300 x 1300 scene goes to the worker
        "ROADSEG_INGEST_FILE_ROOTS": json.dumps([str(large_vegas)]),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    services = {name: Service(name, env, tmp_path / f"{name}.log") for name in ("ingest", "labeler", "gateway")}
    workers = {queue: start_worker(queue, env) for queue in ("ingest", "label", "predict")}
    for service in services.values():
        service.wait()
    endpoints = Endpoints(services["ingest"].url, services["labeler"].url, services["gateway"].url)
    log: list[str] = []
    pipeline = Pipeline(endpoints, echo=log.append, poll_s=0.2, timeout_s=300)
    yield pipeline, env, services, workers, model_dir, log
    for service in services.values():
        service.stop()
    get_settings.cache_clear()


@pytest.mark.slow
def test_scene_to_served_model_with_failure_drills(stack, large_vegas, tmp_path, start_worker, artifacts_dir):
    pipeline, env, services, workers, model_dir, log = stack
    scene_path = large_vegas / VEGAS

    # 1. ingest through the API and the ingest worker
    scene = pipeline.ingest(scene_path, TILE)
    expected_tiles = len(range(0, 1300, TILE)) ** 2
    assert scene["tile_count"] == expected_tiles

    # 2. label through the labeler API; SIGKILL the label worker once it has finished some masks
    labeler = services["labeler"].url
    with open(large_vegas / ROADS, "rb") as fh:
        form = {"scene_id": scene["id"], "options": json.dumps(LANES)}
        response = httpx.post(
            f"{labeler}/api/v1/label-runs", data=form, files={"vectors": ("roads.geojson", fh)}, timeout=120
        )
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while (record := httpx.get(f"{labeler}/api/v1/label-runs/{run_id}").json())["progress"]["done"] == 0:
        assert record["status"] != "failed", record
        assert time.monotonic() < deadline, workers["label"].output()[-3000:]
        time.sleep(0.05)
    workers["label"].kill()
    killed_at = httpx.get(f"{labeler}/api/v1/label-runs/{run_id}").json()
    assert killed_at["status"] == "running", "the drill needs the run unfinished when the worker dies"
    start_worker("label", env)  # the broker re-delivers the unacknowledged task to the new worker
    label_run = pipeline.wait_label(run_id)
    assert label_run["status"] == "done"

    from roadseg.storage import get_storage

    storage = get_storage()
    tiles = storage.list(f"scenes/{scene['id']}/tiles")
    masks = storage.list(f"labels/{run_id}/masks")
    assert len(tiles) == len(set(tiles)) == expected_tiles
    assert len(masks) == len(set(masks)) == expected_tiles
    manifest = json.loads(storage.read_text(f"labels/{run_id}/manifest.json"))
    assert sorted(t["id"] for t in manifest["tiles"]) == sorted(Path(k).stem for k in masks)

    # 3. dataset export (TFRecords in the bucket)
    dataset = pipeline.export([run_id], "e2e")
    assert dataset["url"].startswith("gs://")
    assert sum(s["examples"] for s in dataset["splits"].values()) <= expected_tiles

    # 4. fine-tune version 1 -> 2 as a batch job, export it next to version 1
    params = FinetuneParams(epochs=1, steps_per_epoch=2, batch_size=2, crop_size=128)
    new_version = pipeline.finetune(dataset["url"], model_dir, tmp_path / "run", params)
    assert new_version == 2
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "2"]
    card = json.loads((model_dir / "2" / "model_card.json").read_text())
    assert card["version"] == 2 and "iou_road" in json.dumps(card["metrics"])
    # The fine-tuned version keeps the ground resolution its parent was trained for.
    assert card["pixel_size_m"] == json.loads((model_dir / "1" / "model_card.json").read_text()).get("pixel_size_m")

    # 5. the gateway (embedded backend) picks the new version up without a restart
    health = pipeline.wait_for_model(2)
    assert health["backend"] == "embedded"

    # 6. predict the scene on the predict worker; restart the gateway while the prediction runs
    gateway = services["gateway"]
    with open(scene_path, "rb") as fh:
        response = httpx.post(f"{gateway.url}/api/v1/predictions", files={"file": (scene_path.name, fh)}, timeout=120)
    assert response.status_code == 202, response.text  # large enough for the Celery worker
    prediction_id = response.json()["id"]
    gateway.restart()
    gateway.wait()
    prediction = pipeline.wait_record(f"{gateway.url}/api/v1/predictions/{prediction_id}", "prediction")
    assert prediction["model"]["model_version"] == 2
    assert prediction["info"]["width"] == 1300 and prediction["info"]["height"] == 1300
    mask = httpx.get(f"{gateway.url}/api/v1/predictions/{prediction_id}/files/mask.png")
    assert mask.status_code == 200 and mask.content.startswith(b"\x89PNG")
    predictions = [k for k in storage.list("predictions") if k.endswith("status.json")]
    assert len(predictions) == 1  # the restart neither lost nor duplicated the job

    # before/after metrics on the new dataset, as `roadseg demo` prints them
    before = pipeline.evaluate(model_dir / "1", dataset["url"])
    after = pipeline.evaluate(model_dir / "2", dataset["url"])
    evaluated = sum(dataset["splits"].get(split, {}).get("examples", 0) for split in ("val", "test"))
    for summary in (before, after):
        assert summary["tiles"] == evaluated > 0  # every val and test example of the exported dataset
        iou = summary["iou_road"]  # TP / (TP + FP + FN), so F1 = 2 TP / (2 TP + FP + FN) = 2 IoU / (1 + IoU)
        assert summary["f1"] == pytest.approx(2 * iou / (1 + iou))
        assert summary["iou_mean"] == pytest.approx((iou + summary["iou_background"]) / 2)
    (artifacts_dir / "pipeline_e2e.log").write_text(
        "\n".join(log) + f"\nbefore: {json.dumps(before)}\nafter: {json.dumps(after)}\n"
    )
