"""The missing-roads API on real processes: labeler (uvicorn), Redis, a predict worker and a label worker.

The image goes through the gateway's sharded prediction (3 shards of one row of windows each, the dark test
model: dark smooth pixels are road) and road network (2 shards), the comparison runs on the label worker,
decisions and exports go through HTTP; the decisions then become a dataset that a short training run reads.
Bad input gets a 4xx and leaves nothing in storage.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import httpx
import pytest
from roadseg.storage import LocalStorage
from utils.gateway import dark_model
from utils.missing import ORIGIN, PIXEL, write_far_vectors, write_scene, write_vectors
from utils.processes import Service

SOUTH_Y = ORIGIN[1] - 330 * PIXEL
PHANTOM_X = ORIGIN[0] + 440 * PIXEL


@pytest.fixture
def labeler(settings_env, tmp_path, start_worker, monkeypatch):
    from roadseg.config import get_settings

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    env = {
        **settings_env,
        "ROADSEG_MODEL_DIR": str(dark_model()),
        "ROADSEG_PREDICT_WINDOW": "256",  # 3 rows of windows over the 512 px image...
        "ROADSEG_SHARD_WINDOW_ROWS": "1",  # ...one per shard: the prediction is sharded like a city's
        "ROADSEG_GRAPH_MAX_PIXELS": "100000",  # the road network too (512^2 px), in rows of 256 px windows
        "ROADSEG_GRAPH_WINDOW": "256",
        "ROADSEG_MISSING_MAX_VECTOR_BYTES": "200000",
        "ROADSEG_INGEST_FILE_ROOTS": json.dumps([str(allowed)]),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    service = Service("labeler", env, tmp_path / "labeler.log")
    start_worker("predict", env)
    start_worker("label", env)
    service.wait()
    yield service.url, LocalStorage(tmp_path / "storage"), allowed
    service.stop()
    get_settings.cache_clear()


def _submit(url: str, image, vectors, **fields) -> httpx.Response:
    files = {"image": (image.name, image.read_bytes(), "image/tiff")}
    if vectors is not None:
        files["vectors"] = (vectors.name, vectors.read_bytes(), "application/geo+json")
    return httpx.post(f"{url}/api/v1/missing", files=files, data=fields, timeout=60)


def _wait_done(url: str, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/api/v1/missing/{job_id}", timeout=10).json()
        if status["job"]["status"] in ("done", "failed"):
            return status
        time.sleep(0.5)
    raise TimeoutError(f"missing-roads job {job_id} not done after {timeout}s: {status}")


def test_job_review_export_and_training_from_the_decisions(labeler, tmp_path):
    """Refusals first (nothing may be left of them), then a job from start to a training run."""
    url, storage, allowed = labeler
    _refused_without_a_trace(url, storage, tmp_path)
    image = write_scene(tmp_path)
    answer = _submit(url, image, None, vectors_uri=write_vectors(allowed / "roads.geojson").as_uri())  # allowed
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["status"] == "queued" and job["existing"]["lines"] == 3
    status = _wait_done(url, job["id"])
    assert status["job"]["status"] == "done", status
    assert status["job"]["model"]["model_version"] == 1
    prediction = json.loads(storage.read_text(f"predictions/{job['prediction_id']}/status.json"))
    assert prediction["shards"]["count"] == 3  # predicted shard by shard by the predict worker
    # ...and its road network traced shard by shard too: the comparison read it (no tracing of its own).
    roads = f"predictions/{job['prediction_id']}/roads/shards/"
    assert prediction["roads"] == "ready" and storage.list(roads) == [f"{roads}00000.json", f"{roads}00001.json"]

    page = httpx.get(f"{url}/api/v1/missing/{job['id']}/candidates", timeout=10).json()
    missing = page["candidates"]
    assert len(missing) >= 2 and page["pages"] == 1
    for candidate in missing:
        assert all(abs(y - SOUTH_Y) < 2.0 for _, y in candidate["coordinates"])  # the unmapped south road
        assert candidate["mean_probability"] > 0.5 and candidate["connected"]
    assert sum(c["length_m"] for c in missing) == pytest.approx(256 - 4 * 6.5, abs=12.0)
    unsupported = httpx.get(f"{url}/api/v1/missing/{job['id']}/candidates?kind=unsupported", timeout=10).json()
    assert unsupported["candidates"] and all(
        abs(c["coordinates"][0][0] - PHANTOM_X) < 0.01 for c in unsupported["candidates"]
    )

    best, second = missing[0]["id"], missing[1]["id"]
    decision = httpx.post(
        f"{url}/api/v1/missing/{job['id']}/candidates/{best}/decision", json={"decision": "accept"}, timeout=10
    )
    assert decision.status_code == 200 and decision.json()["reviewer"] == "local"
    httpx.post(
        f"{url}/api/v1/missing/{job['id']}/candidates/{second}/decision", json={"decision": "reject"}, timeout=10
    )
    bad = httpx.post(f"{url}/api/v1/missing/{job['id']}/candidates/{best}/decision", json={"decision": "maybe"})
    assert bad.status_code == 400 and "accept, reject, skip or clear" in bad.json()["detail"]
    assert httpx.get(f"{url}/api/v1/missing/{job['id']}/candidates/m999999/decision").status_code in (404, 405)

    accepted = httpx.get(f"{url}/api/v1/missing/{job['id']}/export/accepted.geojson", timeout=10)
    assert accepted.status_code == 200 and "attachment" in accepted.headers["content-disposition"]
    feature = accepted.json()["features"][0]
    assert feature["properties"]["id"] == best and feature["properties"]["highway"] == "road"
    assert feature["properties"]["source"] == "roadseg roads v1"
    assert feature["geometry"]["coordinates"] == missing[0]["coordinates_wgs84"]
    osc = ET.fromstring(httpx.get(f"{url}/api/v1/missing/{job['id']}/export/accepted.osc", timeout=10).content)
    assert len(osc.findall("create/way")) == 1 and int(osc.find("create/way").get("id")) < 0
    rejected = httpx.get(f"{url}/api/v1/missing/{job['id']}/export/rejected.geojson", timeout=10).json()
    assert [f["properties"]["id"] for f in rejected["features"]] == [second]

    chip = httpx.get(f"{url}/missing/{job['id']}/candidates/{best}/chip.png", timeout=30)
    assert chip.status_code == 200 and chip.content[:8] == b"\x89PNG\r\n\x1a\n"
    html = httpx.get(f"{url}/missing/{job['id']}", timeout=10)
    assert html.status_code == 200 and f'data-candidate="{best}"' in html.text and "1</b> accepted" in html.text

    # An ingested scene (read in place, as a city would be) gives the same candidates through its own job.
    from roadseg.ingest.scene_jobs import register_scene
    from roadseg.ingest.tiling import TileParams
    from roadseg.storage import split_url

    source, key = split_url(image.resolve().as_uri())
    scene = register_scene(storage, "synthetic", source, key, TileParams(), source_url=image.resolve().as_uri())
    files = {"vectors": ("roads.geojson", write_vectors(tmp_path / "again.geojson").read_bytes())}
    answer = httpx.post(f"{url}/api/v1/missing", data={"scene_id": scene.id}, files=files, timeout=60)
    assert answer.status_code == 202, answer.text
    assert _wait_done(url, answer.json()["id"])["job"]["counts"] == status["job"]["counts"]
    again = httpx.get(f"{url}/api/v1/missing/{answer.json()['id']}/candidates", timeout=10).json()["candidates"]
    assert [c["coordinates"] for c in again] == [c["coordinates"] for c in missing]

    # The decisions as training labels, and a short training run that reads them with another source.
    from roadseg.config import get_settings
    from roadseg.missing.dataset import export_dataset
    from roadseg.trainer.train import TrainConfig, train
    from utils.synthetic import write_road_dataset

    dataset = tmp_path / "corrections"
    source = export_dataset(storage, [job["id"]], str(dataset), get_settings(), tile_px=128)
    assert source["candidates"] == {"accepted": 1, "rejected": 1} and source["tiles"] >= 2
    other = write_road_dataset(tmp_path / "other", {"train": 2})
    config = TrainConfig(
        output=str(tmp_path / "run"),
        train_data=[f"{dataset}:1", f"{other}:1"],
        weights=None,
        crop_size=64,
        batch_size=2,
        epochs=1,
        steps_per_epoch=2,
        aspp_filters=16,
        decoder_filters=16,
    )
    assert train(config, verbose=0)["epoch"] == 1


def _refused_without_a_trace(url: str, storage, tmp_path) -> None:
    """Bad input gets a clear 4xx, and neither a job nor a prediction is left in storage."""
    image = write_scene(tmp_path)

    def stored() -> list[str]:
        return storage.list("missing") + storage.list("predictions")

    far = write_far_vectors(tmp_path / "far.geojson")
    answer = _submit(url, image, far)
    assert answer.status_code == 400 and "is a road line over the image" in answer.json()["detail"]
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "FeatureCollection", "features": [')
    answer = _submit(url, image, broken)
    assert answer.status_code == 400 and "cannot read" in answer.json()["detail"]
    empty = tmp_path / "empty.geojson"
    empty.write_bytes(b"")
    assert _submit(url, image, empty).status_code == 400
    huge = tmp_path / "huge.geojson"
    huge.write_text(json.dumps({"type": "FeatureCollection", "features": [], "pad": "x" * 250_000}))
    answer = _submit(url, image, huge)
    assert answer.status_code == 413 and "ROADSEG_MISSING_MAX_VECTOR_BYTES" in answer.json()["detail"]
    not_image = tmp_path / "broken.tif"
    not_image.write_bytes(b"II*\x00 truncated")
    assert _submit(url, not_image, write_vectors(tmp_path / "roads.geojson")).status_code == 400
    image = write_scene(tmp_path, "scene2.tif")
    outside = tmp_path / "roads_outside.geojson"
    write_vectors(outside)
    answer = _submit(url, image, None, vectors_uri=outside.as_uri())
    assert answer.status_code == 400, answer.text
    answer = _submit(url, image, None)
    assert answer.status_code == 400 and "exactly one" in answer.json()["detail"]
    roads = write_vectors(tmp_path / "roads_ok.geojson")
    for options, message in (('{"tolerance_m": -1}', "tolerance_m"), ('{"where": "1=1"}', "where"), ("{", "options")):
        answer = _submit(url, image, roads, options=options)
        assert answer.status_code == 400 and message in answer.json()["detail"], answer.text
    assert stored() == []
