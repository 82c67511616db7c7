"""The missing-roads review page in real headless Chromium: keys decide and move on, pages turn, bulk reject,
chips load, the policy blocks nothing; a viewer sees the page but cannot decide (Identity-Aware Proxy)."""

from __future__ import annotations

import contextlib
import json
import threading

import pytest
import rasterio
from roadseg import raster
from roadseg.missing.records import bulk_rule, decisions
from roadseg.missing.run import prepare_job, run_comparison
from roadseg.storage import LocalStorage
from utils.missing import write_probabilities, write_scene, write_vectors
from utils.processes import free_port, wait_for_port

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
MODEL = {"backend": "test", "model_name": "roads", "model_version": 7}


@pytest.fixture
def review_server(tmp_path, monkeypatch):
    from roadseg.config import get_settings

    monkeypatch.setenv("ROADSEG_MISSING_PAGE_SIZE", "2")  # 3 candidates: two pages
    get_settings.cache_clear()
    storage = LocalStorage(tmp_path / "storage")
    image = write_scene(tmp_path)
    with rasterio.open(image) as ds:
        info = raster.scene_info(ds)
    record = prepare_job(
        storage,
        get_settings(),
        info,
        write_vectors(tmp_path / "roads.geojson"),
        input_name=image.name,
        image_url=image.resolve().as_uri(),
    )
    with rasterio.open(write_probabilities(tmp_path / "probability.tif")) as prob:
        run_comparison(storage, record.id, prob, get_settings(), 0.5, MODEL)
    with _serve(storage) as url:
        yield url, storage, record.id
    get_settings.cache_clear()


@contextlib.contextmanager
def _serve(storage):
    """The labeler app on a free port, in a thread; made here, so it reads the settings of this moment."""
    import uvicorn
    from roadseg.label_service import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(storage), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _launch(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])


def test_keys_pages_and_bulk_reject(review_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, storage, job_id = review_server
    with sync_api.sync_playwright() as pw:
        browser = _launch(pw)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        blocked = []
        page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{url}/missing/{job_id}")
        focused = lambda: page.evaluate("() => document.activeElement.dataset.candidate")  # noqa: E731
        assert focused() == "m000000"
        page.wait_for_function("() => document.querySelector('#cand-m000000 img').naturalWidth > 0")  # the chip
        page.keyboard.press("a")
        page.wait_for_function("() => document.activeElement.dataset.candidate === 'm000001'")
        assert page.locator("#cand-m000000 .state").inner_text() == "accepted"
        assert page.locator("#progress").inner_text().startswith("3 candidates: 1 accepted")  # updated with the card
        page.keyboard.press("s")
        page.wait_for_function("() => document.querySelector('#cand-m000001 .state').innerText === 'skipped'")
        page.keyboard.press("n")  # the next page holds the third candidate
        page.wait_for_url(f"{url}/missing/{job_id}?page=1")
        assert page.locator("#tiles .candidate").evaluate_all("els => els.map(e => e.dataset.candidate)") == ["m000002"]
        page.keyboard.press("r")
        page.wait_for_function("() => document.querySelector('#cand-m000002 .state').innerText === 'rejected'")
        page.keyboard.press("p")
        page.wait_for_url(f"{url}/missing/{job_id}?page=0")
        page.fill("input[name=below]", "1")
        page.click("#bulk-reject")
        page.wait_for_url(f"{url}/missing/{job_id}")
        assert page.locator("#cand-m000001 .state").inner_text() == "skipped"  # seen, and now...
        progress = page.locator("#progress").inner_text()
        assert "1 accepted" in progress and "2 rejected (1 by the bulk rule under 1.000)" in progress
        assert "0 left" in progress
        browser.close()
    assert blocked == []
    made = decisions(storage, job_id)
    assert {k: d.decision for k, d in made.items()} == {"m000000": "accept", "m000001": "skip", "m000002": "reject"}
    assert made["m000000"].reviewer == "local"
    assert bulk_rule(storage, job_id).below == 1.0


def test_viewer_sees_but_cannot_decide(review_server, tmp_path, monkeypatch):
    from roadseg.auth import IAP_HEADER
    from roadseg.config import get_settings
    from utils.iap import TestIssuer

    sync_api = pytest.importorskip("playwright.sync_api")
    _, storage, job_id = review_server
    issuer = TestIssuer(tmp_path)
    for name, value in issuer.env({"ana@example.com": "labeler", "@example.com": "viewer"}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ROADSEG_RATE_LIMIT_PER_MINUTE", "0")  # no Redis here
    get_settings.cache_clear()
    with _serve(storage) as url, sync_api.sync_playwright() as pw:
        browser = _launch(pw)
        viewer = browser.new_page(extra_http_headers={IAP_HEADER: issuer.assertion("bo@example.com")})
        assert viewer.goto(f"{url}/missing/{job_id}").status == 200
        assert viewer.locator("#cand-m000000 button").count() == 0  # no decision buttons for a viewer
        answer = viewer.request.post(
            f"{url}/api/v1/missing/{job_id}/candidates/m000000/decision",
            data=json.dumps({"decision": "accept"}),
            headers={"content-type": "application/json"},
        )
        assert answer.status == 403
        labeler = browser.new_page(extra_http_headers={IAP_HEADER: issuer.assertion("ana@example.com")})
        labeler.goto(f"{url}/missing/{job_id}")
        labeler.keyboard.press("r")
        labeler.wait_for_function("() => document.querySelector('#cand-m000000 .state').innerText === 'rejected'")
        browser.close()
    assert decisions(storage, job_id)["m000000"].reviewer == "ana@example.com"
