"""The review page in real headless Chromium: one key press decides a tile and moves to the next."""

from __future__ import annotations

import threading
import time

import pytest
from roadseg.labeler.decisions import get_decisions
from roadseg.labeler.run import LabelOptions, label_run, prepare_run
from roadseg.storage import LocalStorage
from utils.labeler import VEGAS_IMAGE, VEGAS_ROADS, ingest_scene
from utils.processes import free_port, wait_for_port

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def review_server(tmp_path, shared_dir):
    import uvicorn
    from roadseg.labeler.api import create_app

    storage = LocalStorage(tmp_path / "storage")
    folder = shared_dir / "data" / "spacenet-vegas"
    ingest_scene(storage, "vegas", folder, VEGAS_IMAGE, 256)
    run_id = prepare_run(storage, "vegas", folder / VEGAS_ROADS, LabelOptions())["id"]
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
        page.goto(f"{url}/runs/{run_id}")
        tiles = page.locator("#tiles .tile").evaluate_all("els => els.map(e => e.dataset.tile)")
        focused = lambda: page.evaluate("document.activeElement.dataset.tile")  # noqa: E731
        assert focused() == tiles[0]

        page.keyboard.press("r")
        page.wait_for_function(f"document.activeElement.dataset.tile === '{tiles[1]}'")
        assert page.locator(f"#tile-{tiles[0]} .state").inner_text() == "rejected"
        page.keyboard.press("a")
        page.wait_for_function(f"document.activeElement.dataset.tile === '{tiles[2]}'")
        page.keyboard.press("k")
        page.keyboard.press("u")  # undo the accept of tiles[1]
        page.wait_for_function(f"document.querySelector('#tile-{tiles[1]} .state').innerText === 'undecided'")
        page.locator(f"#tile-{tiles[3]} .do-accept").click()  # a click works as well as a key
        page.wait_for_function(f"document.querySelector('#tile-{tiles[3]} .state').innerText === 'accepted'")
        browser.close()
    deadline = time.monotonic() + 5
    while get_decisions(storage, run_id) != {tiles[0]: "reject", tiles[3]: "accept"}:
        assert time.monotonic() < deadline, get_decisions(storage, run_id)
        time.sleep(0.05)
