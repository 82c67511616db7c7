"""End to end in real headless Chromium: upload the SpaceNet Vegas tile, see the overlay, click a route.

Model: the shipped ``models/roads`` when it exists, otherwise the deterministic dark-is-road test
model (a random-weights DeepLabV3+ finds no roads, so no route could be clicked). Either way the
two clicks land on two far-apart nodes of the largest connected part of the road network the
gateway itself returned (roads.geojson), i.e. on roads *as predicted*, so the test checks the
page and the route machinery rather than the model's quality.
"""

from __future__ import annotations

import json

import httpx
import networkx as nx
import numpy as np
import pytest
from roadseg.geo import crs_to_pixels, transform_points
from roadseg.roadnet.graph import graph_from_geojson
from utils.gateway import SHIPPED, Gateway, dark_model
from utils.processes import free_port

pytestmark = pytest.mark.browser
#: What Chromium reports the Content-Security-Policy blocked on the page (must stay empty).
CSP_VIOLATIONS: list[str] = []

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def model_dir():
    from roadseg.model_versions import latest_version

    return SHIPPED if latest_version(SHIPPED) is not None else dark_model()


def _serve(tmp_path_factory, redis_url, models):
    root = tmp_path_factory.mktemp("web")
    env = {
        "ROADSEG_STORAGE_URL": (root / "storage").as_uri(),
        "ROADSEG_REDIS_URL": redis_url,
        "ROADSEG_MODEL_DIR": str(models),
        # The 1300 px Vegas tile is predicted by the gateway itself (no predict worker here); the default
        # in-request budget (1024^2 px) would queue it.
        "ROADSEG_SYNC_PREDICT_MAX_PIXELS": str(1300 * 1300),
    }
    server = Gateway(env, root / "gateway.log", free_port())
    try:
        server.wait()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, redis_url):
    """The gateway serving the shipped model (or the test model before one exists)."""
    yield from _serve(tmp_path_factory, redis_url, model_dir())


@pytest.fixture(scope="module")
def dark_gateway(tmp_path_factory, redis_url):
    """The gateway serving the deterministic test model, for tests of the page rather than the model."""
    yield from _serve(tmp_path_factory, redis_url, dark_model())


@pytest.fixture(scope="module")
def page(gateway):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})  # a laptop screen
        page.on("console", lambda m: CSP_VIOLATIONS.append(m.text) if "Content Security Policy" in m.text else None)
        yield page
        browser.close()


def far_apart_road_points(gateway_url: str, record: dict) -> list[tuple[float, float]]:
    """Pixel positions of the two most distant nodes of the largest connected road component."""
    roads = httpx.get(gateway_url + record["links"]["roads.geojson"]).json()
    graph = graph_from_geojson(roads)
    largest = max(nx.connected_components(graph), key=len)
    xy = np.array([[graph.nodes[n]["x"], graph.nodes[n]["y"]] for n in largest])
    info = record["info"]
    px = crs_to_pixels(transform_points(xy, graph.graph["crs"], info["crs"]), info["transform"])
    i, j = np.unravel_index(np.argmax(((px[:, None] - px[None]) ** 2).sum(-1)), (len(px), len(px)))
    return [tuple(px[i]), tuple(px[j])]


def test_upload_overlay_and_route_in_chromium(gateway, page, shared_dir, artifacts_dir):
    tile = shared_dir / "data" / "spacenet-vegas" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
    page.goto(gateway.url)
    page.wait_for_selector("#model-card dl")
    assert "v1" in page.inner_text("#model-card") or "v" in page.inner_text("#model-card")

    page.set_input_files("#file", str(tile))
    page.wait_for_function(
        "() => { const o = document.getElementById('overlay'); return o && o.complete "
        "&& o.naturalWidth === 1300 && document.getElementById('base').naturalWidth === 1300; }",
        timeout=120_000,
    )
    job_id = page.get_attribute(".viewer", "data-id")
    record = httpx.get(f"{gateway.url}/api/v1/predictions/{job_id}").json()
    assert record["status"] == "done" and record["info"]["georeferenced"]
    if record.get("resampling"):  # the shipped model's card says 1 m pixels; the tile has 0.27 m
        assert record["resampling"]["factor"] > 3
        assert "this image: 0.27 m" in page.inner_text("#resampling")

    # Opacity slider, from the keyboard.
    page.focus("#opacity")
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    assert page.eval_on_selector("#overlay", "o => o.style.opacity") == "0.67"

    box = page.locator("#stack").bounding_box()
    scale = box["width"] / record["info"]["width"]
    for x, y in far_apart_road_points(gateway.url, record):
        page.mouse.click(box["x"] + x * scale, box["y"] + y * scale)
    page.wait_for_function(
        "() => document.getElementById('route-info').textContent.startsWith('Route length')", timeout=30_000
    )
    info = page.inner_text("#route-info")
    length_m = float(info.split(":")[1].strip().removesuffix(" m"))
    assert length_m > 20
    assert page.locator("#route-line").count() == 1
    assert len(page.get_attribute("#route-line", "points").split()) >= 2
    page.screenshot(path=str(artifacts_dir / "web_page_route.png"), full_page=True)
    assert page.locator(".downloads a").count() >= 5
    assert CSP_VIOLATIONS == []


def test_page_shows_clear_errors(gateway, page, tmp_path, artifacts_dir):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.goto(gateway.url)
    page.set_input_files("#file", str(bad))
    alert = page.wait_for_selector("#result .error[role=alert]")
    assert "not a readable image" in alert.inner_text()
    page.screenshot(path=str(artifacts_dir / "web_page_error.png"))
    assert json.loads(httpx.get(f"{gateway.url}/healthz").text)["status"] == "ok"


def test_drag_and_drop_and_keyboard_route(dark_gateway, page, artifacts_dir):
    """Drop a file on the drop zone (a real DragEvent), then enter a route with the keyboard only.

    The expected route follows a street of the synthetic example image, so this test uses the
    deterministic test model: it checks the page's drag-and-drop and keyboard path, not the model.
    """
    gateway = dark_gateway
    import base64

    from roadseg.gateway.example import example_png

    page.goto(gateway.url)
    page.evaluate(
        """async (b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            document.getElementById("drop-zone").dispatchEvent(
                new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
        }""",
        base64.b64encode(example_png()).decode(),
    )
    page.wait_for_function(
        "() => { const o = document.getElementById('overlay'); return o && o.complete && o.naturalWidth === 768; }",
        timeout=60_000,
    )
    record = httpx.get(f"{gateway.url}/api/v1/predictions/{page.get_attribute('.viewer', 'data-id')}").json()
    assert record["input_name"] == "dropped.png"
    # Keyboard only: along the side street drawn from (140, 0) to (180, 768) in the example image.
    page.focus("input[name=sx]")
    for value in ("143", "50", "176", "700"):
        page.keyboard.type(value)
        page.keyboard.press("Tab")
    page.focus("input[name=ey]")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.getElementById('route-info').textContent.startsWith('Route length')", timeout=30_000
    )
    length_px = float(page.inner_text("#route-info").split(":")[1].strip().removesuffix(" px"))
    assert length_px == pytest.approx(651, rel=0.1)
    page.screenshot(path=str(artifacts_dir / "web_page_keyboard_route.png"), full_page=True)


def test_sign_in_with_an_api_key_then_use_the_page(page, tmp_path, redis_url, artifacts_dir):
    """Secure mode without IAP, in Chromium: / sends the browser to /login; after it the page works as usual.

    A fresh browser context of the module's Chromium (its own cookies) against a second gateway.
    """
    from roadseg.auth import hash_key

    key = "rsk_chromium-test-key"
    env = {
        "ROADSEG_STORAGE_URL": (tmp_path / "storage").as_uri(),
        "ROADSEG_REDIS_URL": redis_url,
        "ROADSEG_MODEL_DIR": str(dark_model()),
        "ROADSEG_AUTH_MODE": "required",
        "ROADSEG_API_KEYS": f"mapper viewer {hash_key(key)}",
    }
    server = Gateway(env, tmp_path / "gateway.log", free_port())
    try:
        server.wait()
        context = page.context.browser.new_context(viewport={"width": 1366, "height": 900})
        tab = context.new_page()
        blocked = []
        tab.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
        tab.goto(server.url)
        assert tab.url.endswith("/login?next=/")
        tab.fill("#key", "rsk_wrong")
        tab.click("button[type=submit]")
        assert "unknown API key" in tab.inner_text("[role=alert]")
        tab.fill("#key", key)
        tab.click("button[type=submit]")
        tab.wait_for_selector("#model-card dl")
        assert tab.url == f"{server.url}/"
        tab.click("#example")
        overlay_loaded = "() => { const o = document.getElementById('overlay'); return o && o.complete; }"
        tab.wait_for_function(overlay_loaded, timeout=60_000)
        assert tab.eval_on_selector("#overlay", "o => o.naturalWidth") == 768
        tab.screenshot(path=str(artifacts_dir / "web_page_signed_in.png"))
        context.close()
        assert blocked == []
    finally:
        server.stop()


def test_clicks_on_the_image_edges_map_inside_the_image(dark_gateway, page):
    """A click on the image's very first row gave y = -0.2 ("outside the image"): Chromium reports whole
    pixels for clicks while the image's box may start at a fraction of one. Clicks map into the image."""
    from roadseg.gateway.example import example_png

    page.goto(dark_gateway.url)
    page.set_input_files("#file", files=[{"name": "x.png", "mimeType": "image/png", "buffer": example_png()}])
    page.wait_for_function("() => { const b = document.getElementById('base'); return b && b.complete; }")
    page.evaluate("() => { document.getElementById('stack').style.marginTop = '0.4px'; }")  # a fractional top
    box = page.locator("#stack").bounding_box()
    assert box["y"] % 1 != 0
    width, height = (int(page.get_attribute(".viewer", a)) for a in ("data-width", "data-height"))
    page.mouse.click(box["x"] + box["width"] / 2, box["y"])  # the top edge
    page.mouse.click(box["x"] + box["width"] - 0.01, box["y"] + box["height"] - 0.01)  # the bottom right corner
    start = [float(page.input_value(f"input[name={n}]")) for n in ("sx", "sy")]
    end = [float(page.input_value(f"input[name={n}]")) for n in ("ex", "ey")]
    assert start[1] == 0 and 0 < start[0] < width, start
    assert width - 2 < end[0] <= width and height - 2 < end[1] <= height, end
