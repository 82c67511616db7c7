"""The review page in real headless Chromium: one key press decides a tile and moves to the next."""

from __future__ import annotations

import threading
import time

import pytest
from roadseg.labeler.decisions import get_decisions
from roadseg.labeler.run import LabelOptions, label_run, prepare_run, review_key
from roadseg.storage import LocalStorage
from utils.labeler import VEGAS_IMAGE, VEGAS_ROADS, ingest_scene
from utils.paths import DATA
from utils.processes import free_port, wait_for_port

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def review_server(tmp_path):
    """The review page of a run on the Vegas-like stand-in in tests/data (25 tiles of 64 px)."""
    import uvicorn
    from roadseg.label_service import create_app

    storage = LocalStorage(tmp_path / "storage")
    folder = DATA / "spacenet-vegas"
    ingest_scene(storage, "vegas", folder, VEGAS_IMAGE, 64)
    run_id = prepare_run(storage, "vegas", folder / VEGAS_ROADS, LabelOptions()).id
    label_run(storage, run_id)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(storage), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}", storage, run_id
    server.should_exit = True
    thread.join(10)


def test_keys_accept_reject_and_undo(review_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, storage, run_id = review_server
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        blocked = []
        page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{url}/runs/{run_id}")
        tiles = page.locator("#tiles .tile").evaluate_all("els => els.map(e => e.dataset.tile)")
        focused = lambda: page.evaluate("() => document.activeElement.dataset.tile")  # noqa: E731
        assert focused() == tiles[0]
        undecided = int(page.inner_text("#undecided"))
        assert undecided == len(tiles) == 25  # a fresh run

        def counted(n: int) -> None:
            page.wait_for_function(f"() => document.getElementById('undecided').innerText === '{n}'")

        page.keyboard.press("r")
        page.wait_for_function(f"() => document.activeElement.dataset.tile === '{tiles[1]}'")
        assert page.locator(f"#tile-{tiles[0]} .state").inner_text() == "rejected"
        page.keyboard.press("a")
        page.wait_for_function(f"() => document.activeElement.dataset.tile === '{tiles[2]}'")
        counted(undecided - 2)  # "N undecided" follows every decision (out-of-band swap)
        page.keyboard.press("k")
        page.keyboard.press("u")  # undo the accept of tiles[1]
        page.wait_for_function(f"() => document.querySelector('#tile-{tiles[1]} .state').innerText === 'undecided'")
        counted(undecided - 1)  # the undo gives one back
        page.locator(f"#tile-{tiles[3]} .do-accept").click()  # a click works as well as a key
        page.wait_for_function(f"() => document.querySelector('#tile-{tiles[3]} .state').innerText === 'accepted'")
        counted(undecided - 2)  # the click takes it
        browser.close()
    assert blocked == []  # the review page's script and styles are files, allowed by the policy
    deadline = time.monotonic() + 5
    while get_decisions(storage, run_id) != {tiles[0]: "reject", tiles[3]: "accept"}:
        assert time.monotonic() < deadline, get_decisions(storage, run_id)
        time.sleep(0.05)


def test_review_through_identity_aware_proxy_records_who_decided(review_server, tmp_path, monkeypatch):
    """Secure mode in Chromium: every request (page, htmx posts, images) carries IAP's signed header.

    A labeler's key press is recorded under the e-mail IAP vouched for; a viewer may not open the page.
    """
    import json

    from roadseg.auth import IAP_HEADER
    from roadseg.config import get_settings
    from utils.iap import TestIssuer

    sync_api = pytest.importorskip("playwright.sync_api")
    url, storage, run_id = review_server
    issuer = TestIssuer(tmp_path)
    for name, value in issuer.env({"ana@example.com": "labeler", "@example.com": "viewer"}).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            anonymous = browser.new_page()
            anonymous.goto(f"{url}/runs/{run_id}")
            assert anonymous.url == f"{url}/login?next=/runs/{run_id}"  # no identity: the sign-in page
            viewer = browser.new_page(extra_http_headers={IAP_HEADER: issuer.assertion("bo@example.com")})
            assert viewer.goto(f"{url}/runs/{run_id}").status == 403
            page = browser.new_page(extra_http_headers={IAP_HEADER: issuer.assertion("ana@example.com")})
            assert page.goto(f"{url}/runs/{run_id}").status == 200
            first = page.evaluate("() => document.activeElement.dataset.tile")
            page.wait_for_function(
                f"() => document.querySelector('#tile-{first} img').naturalWidth > 0"
            )  # overlay PNG too
            page.keyboard.press("a")
            page.wait_for_function(f"() => document.querySelector('#tile-{first} .state').innerText === 'accepted'")
            browser.close()
        assert json.loads(storage.read_text(review_key(run_id, first)))["reviewer"] == "ana@example.com"
    finally:
        get_settings.cache_clear()
