"""The gateway as deployed: uvicorn process, Celery worker for large images, model hot reload, concurrency."""

from __future__ import annotations

import io
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image
from utils.gateway import Gateway, dark_model, road_image
from utils.processes import free_port


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_url):
    root = tmp_path_factory.mktemp("gateway")
    models = root / "models"
    shutil.copytree(dark_model(), models)
    env = {
        "ROADSEG_STORAGE_URL": (root / "storage").as_uri(),
        "ROADSEG_REDIS_URL": redis_url,
        "ROADSEG_MODEL_DIR": str(models),
        "ROADSEG_SYNC_PREDICT_MAX_PIXELS": str(400 * 400),
        "ROADSEG_PREDICT_WINDOW": "512",  # several windows on the images below, so progress moves per window
    }
    gateway = Gateway(env, root / "gateway.log", free_port())
    try:
        gateway.wait()
        gateway.env, gateway.models = env, models
        yield gateway
    finally:
        gateway.stop()


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_twenty_concurrent_predictions_all_succeed(service):
    def one(seed: int):
        image = png(road_image(256, 300, seed=seed))
        r = httpx.post(f"{service.url}/api/v1/predictions", files={"file": (f"{seed}.png", image)}, timeout=120)
        mask = httpx.get(service.url + r.json()["links"]["mask.png"], timeout=30) if r.status_code == 201 else None
        return r, mask

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert [r.status_code for r, _ in results] == [201] * 20, [r.text for r, _ in results if r.status_code != 201]
    assert len({r.json()["id"] for r, _ in results}) == 20
    for _, mask in results:
        pixels = np.asarray(Image.open(io.BytesIO(mask.content)))
        assert pixels.shape == (256, 300) and (pixels[66, 100:200] == 255).all() and pixels[130, 130] == 0


def test_large_image_runs_on_the_worker_with_progress(service, start_worker):
    r = httpx.post(f"{service.url}/ui/predictions", files={"file": ("big.png", png(road_image(700, 900)))}, timeout=60)
    assert r.status_code == 200 and 'hx-trigger="every 1s"' in r.text  # the page polls a queued job
    job_url = service.url + r.text.split('hx-get="')[1].split('"')[0].replace("/ui/", "/api/v1/")
    assert httpx.get(job_url).json()["status"] == "queued"
    worker = start_worker("predict", service.env)
    seen, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        record = httpx.get(job_url).json()
        seen.append((record["status"], record.get("progress")))
        if record["status"] in ("done", "failed"):
            break
        time.sleep(0.3)
    assert record["status"] == "done", record
    assert record["windows_total"] == 6 and record["info"]["width"] == 900
    # The bar moves window by window (6 windows; a record rounds to 3 decimals) and never back.
    fractions = [p for _, p in seen if p is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert set(fractions) <= {round(done / 6, 3) for done in range(7)}
    mask = np.asarray(Image.open(io.BytesIO(httpx.get(service.url + record["links"]["mask.png"]).content)))
    assert mask.shape == (700, 900) and (mask[516, 100:800] == 255).all()
    page = httpx.get(service.url + "/ui/predictions/" + record["id"]).text
    # The viewer no longer polls itself; at most the road network's line does, until the worker built it.
    assert "overlay.png" in page and f'hx-get="/ui/predictions/{record["id"]}" hx-trigger' not in page
    # The predict worker loaded the model and ran each signature before it took the job. The task itself
    # ends after the record says done (it builds the road network next), so wait for its log line.
    deadline = time.monotonic() + 60
    while " succeeded in " not in (log := worker.log_path.read_text(errors="replace")) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "model roads v1 warm in" in log and "(512 px window, tta none)" in log
    assert log.index("warm in") < log.index(" succeeded in ")  # before its first task finished


def test_a_new_model_version_is_served_without_restart(service):
    assert httpx.get(f"{service.url}/healthz").json()["model_version"] == 1
    staging = service.models / ".v2-staging"
    shutil.copytree(service.models / "1", staging)
    card = (staging / "model_card.json").read_text().replace('"version": 1', '"version": 2')
    (staging / "model_card.json").write_text(card.replace('"threshold": 0.5', '"threshold": 0.3'))
    staging.rename(service.models / "2")
    health = httpx.get(f"{service.url}/healthz").json()
    assert health == {"status": "ok", "backend": "embedded", "model_name": "roads", "model_version": 2}
    assert httpx.get(f"{service.url}/api/v1/model").json()["threshold"] == 0.3
    upload = {"file": ("a.png", png(road_image(128, 128)))}
    r = httpx.post(f"{service.url}/api/v1/predictions", files=upload, timeout=60)
    assert r.json()["model"]["model_version"] == 2 and r.json()["threshold"] == 0.3
