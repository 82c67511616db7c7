"""The map page in real headless Chromium against a real gateway process: tiles load, pan and zoom, a route.

MapLibre is the vendored copy (no CDN); the page must run under the service's Content-Security-Policy.
"""

from __future__ import annotations

import httpx
import pytest
from pyproj import Transformer
from roadseg.storage import LocalStorage
from utils.gateway import Gateway, dark_model, road_image, write_geotiff
from utils.map_data import register_mosaic_scene
from utils.processes import free_port

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
# WebGL in headless Chromium without a GPU: SwiftShader.
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-first-run"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, redis_url):
    root = tmp_path_factory.mktemp("map")
    env = {
        "ROADSEG_STORAGE_URL": (root / "storage").as_uri(),
        "ROADSEG_REDIS_URL": redis_url,
        "ROADSEG_MODEL_DIR": str(dark_model()),
    }
    server = Gateway(env, root / "gateway.log", free_port())
    try:
        server.wait()
        server.storage = LocalStorage(root / "storage")
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser_page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.problems = []
        page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
        page.tiles = []
        page.on("response", lambda r: page.tiles.append((r.url, r.status)) if "/tiles/" in r.url else None)
        yield page
        browser.close()


def wait_idle(page) -> None:
    """Until MapLibre has drawn every tile it asked for."""
    page.wait_for_function(
        "() => window.roadsegMap && window.roadsegMap.loaded() && window.roadsegMap.areTilesLoaded()"
    )


def loaded(page, part: str) -> set[str]:
    return {url for url, status in page.tiles if part in url and status == 200}


def test_a_georeferenced_prediction_on_the_map_pans_zooms_and_routes(gateway, browser_page, tmp_path, artifacts_dir):
    page = browser_page
    src = write_geotiff(tmp_path / "scene.tif", road_image(1024, 1024))
    with open(src, "rb") as fh:
        r = httpx.post(
            f"{gateway.url}/api/v1/predictions", files={"file": ("scene.tif", fh, "image/tiff")}, timeout=120
        )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]

    page.goto(f"{gateway.url}/map?prediction={job_id}")
    page.wait_for_function("() => document.getElementById('status').textContent === 'Map ready.'", timeout=60_000)
    wait_idle(page)
    first = loaded(page, "/tiles/image/") | loaded(page, "/tiles/surface/")
    assert loaded(page, "/tiles/image/") and loaded(page, "/tiles/surface/")
    zoom = page.evaluate("() => window.roadsegMap.getZoom()")

    box = page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)  # pan: drag half a screen to the left
    page.mouse.down()
    page.mouse.move(cx - 300, cy, steps=10)
    page.mouse.up()
    for _ in range(4):  # zoom in past the next tile zoom level
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(200)
    page.wait_for_function(f"() => window.roadsegMap.getZoom() > {zoom + 1.5}")
    wait_idle(page)
    after = loaded(page, "/tiles/image/") | loaded(page, "/tiles/surface/")
    assert after - first, "no new tiles after panning and zooming"

    # The road network as vector lines in lon/lat, from the API.
    page.wait_for_function("() => window.roadsegMap.querySourceFeatures('roads').length > 0", timeout=60_000)
    page.check("#toggle-probability")
    wait_idle(page)
    assert loaded(page, "/tiles/probability/")

    # A route along the road at row 66, from column 110 to 310 (0.5 m pixels: about 100 m), clicked in lon/lat.
    page.evaluate(f"() => window.roadsegMap.jumpTo({{zoom: {zoom}}})")
    to_lonlat = Transformer.from_crs("EPSG:32611", "EPSG:4326", always_xy=True)
    points = [to_lonlat.transform(500000 + 0.5 * x, 4000000 - 0.5 * 66) for x in (110, 310)]
    page.evaluate(f"() => window.roadsegMap.fitBounds([{list(points[0])}, {list(points[1])}], {{padding: 200}})")
    wait_idle(page)
    for lon, lat in points:
        p = page.evaluate(f"() => window.roadsegMap.project([{lon}, {lat}])")
        page.mouse.click(box["x"] + p["x"], box["y"] + p["y"])
    page.wait_for_function("() => document.getElementById('route-result').textContent.endsWith(' m')")
    length_m = float(page.inner_text("#route-result").removesuffix(" m"))
    assert length_m == pytest.approx(100, rel=0.15)
    page.screenshot(path=str(artifacts_dir / "map_page.png"))
    assert not [p for p in page.problems if "Content Security Policy" in p or "Failed" in p], page.problems


def test_an_ingested_multi_file_scene_on_the_map(gateway, browser_page, tmp_path):
    page = browser_page
    record, _ = register_mosaic_scene(gateway.storage, tmp_path)
    page.goto(f"{gateway.url}/map?scene={record['id']}")
    page.wait_for_function("() => document.getElementById('status').textContent === 'Map ready.'", timeout=60_000)
    wait_idle(page)
    assert loaded(page, f"/api/v1/scenes/{record['id']}/tiles/image/")
    assert not page.is_visible("#route-panel")
    assert not [p for p in page.problems if "Content Security Policy" in p], page.problems


def test_missing_road_candidates_on_the_map(gateway, browser_page, tmp_path):
    """A missing-roads job's candidates over its prediction: served in lon/lat, drawn, counted, toggled."""
    import json

    from roadseg.config import get_settings
    from roadseg.documents import PredictionRecord
    from roadseg.missing.jobs import compare_prediction
    from roadseg.missing.run import prepare_job

    page = browser_page
    src = write_geotiff(tmp_path / "scene.tif", road_image(512, 512))
    with open(src, "rb") as fh:
        r = httpx.post(f"{gateway.url}/api/v1/predictions", files={"file": ("scene.tif", fh)}, timeout=120)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    none_yet = httpx.get(f"{gateway.url}/api/v1/predictions/{job_id}/files/missing.geojson", timeout=10)
    assert none_yet.status_code == 404 and "has no file 'missing.geojson'" in none_yet.json()["detail"]

    # The map has every painted road (centres at 66, 216 and 366 px) but the horizontal one at row 366.
    to_lonlat = Transformer.from_crs("EPSG:32611", "EPSG:4326", always_xy=True)

    def line(points):
        return [list(to_lonlat.transform(500000 + 0.5 * x, 4000000 - 0.5 * y)) for x, y in points]

    mapped = [line([(0, c), (512, c)]) for c in (66, 216)] + [line([(c, 0), (c, 512)]) for c in (66, 216, 366)]
    vectors = tmp_path / "roads.geojson"
    features = [
        {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": c}} for c in mapped
    ]
    vectors.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    storage, settings = gateway.storage, get_settings()
    prediction = PredictionRecord.model_validate_json(storage.read_text(f"predictions/{job_id}/status.json"))
    missing = prepare_job(storage, settings, prediction.info, vectors, input_name="scene.tif", prediction_id=job_id)
    assert compare_prediction(storage, missing.id, settings) == "done"

    item = httpx.get(f"{gateway.url}/api/v1/predictions/{job_id}/item.json", timeout=10).json()
    asset = item["assets"]["missing_geojson"]
    assert asset["type"] == "application/geo+json" and asset["href"].endswith("/files/missing.geojson")
    served = httpx.get(asset["href"], timeout=10).json()
    row_lat = to_lonlat.transform(500000, 4000000 - 0.5 * 366)[1]
    assert served["features"], served
    for feature in served["features"]:  # on the unmapped road, within 2 m
        assert all(abs(lat - row_lat) < 2e-5 for _, lat in feature["geometry"]["coordinates"])

    page.goto(f"{gateway.url}/map?prediction={job_id}")
    page.wait_for_function("() => window.roadsegMap && window.roadsegMap.getLayer('missing')", timeout=60_000)
    wait_idle(page)
    page.wait_for_function("() => window.roadsegMap.querySourceFeatures('missing').length > 0", timeout=30_000)
    assert f"missing-road candidates ({len(served['features'])})" in page.inner_text("#layers")
    page.uncheck("#toggle-missing")
    assert page.evaluate("() => window.roadsegMap.getLayoutProperty('missing', 'visibility')") == "none"
    assert not [p for p in page.problems if "Content Security Policy" in p], page.problems


def test_a_basemap_setting_opens_the_policy_to_its_origin_only(settings_env, monkeypatch):
    from roadseg.config import get_settings
    from roadseg.gateway.api import create_app
    from roadseg.inference.predictor import EmbeddedPredictor
    from utils.clients import local_client

    app = create_app(predictor=EmbeddedPredictor(dark_model() / "1"))
    with local_client(app) as client:
        csp = client.get("/map").headers["content-security-policy"]
        assert "tile.example.org" not in csp and client.get("/ui/map/config").json() == {"basemap_url": None}
        monkeypatch.setenv("ROADSEG_MAP_BASEMAP_URL", "https://tile.example.org/{z}/{x}/{y}.png")
        get_settings.cache_clear()
        csp = client.get("/map").headers["content-security-policy"]
        assert "img-src 'self' data: blob: https://tile.example.org;" in csp
        assert "connect-src 'self' https://tile.example.org;" in csp and "script-src 'self';" in csp
        assert client.get("/ui/map/config").json()["basemap_url"].startswith("https://tile.example.org/")
