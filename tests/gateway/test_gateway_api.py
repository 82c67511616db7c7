"""Gateway API in-process (real app, real SavedModel, real local storage): predictions, routes, bad input."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import rasterio
from PIL import Image
from roadseg.gateway.api import create_app
from roadseg.inference.predictor import EmbeddedPredictor
from roadseg.storage import get_storage
from utils.clients import local_client
from utils.gateway import dark_model, dark_two_output_model, road_image, write_geotiff


def stored_keys() -> list[str]:
    return get_storage().list("predictions")


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def shown(**fields):
    """A prediction as the page's fragments get it: a status record with its links, ``fields`` over a queued one."""
    from roadseg.gateway.endpoints.predictions import Prediction

    info = {"georeferenced": False, "transform": [1, 0, 0, 0, 1, 0], "width": 64, "height": 64, "bands": 3}
    queued = {"created": 0.0, "updated": 0.0, "input_name": "a.png", "input_bytes": 1, "progress": 0.0}
    return Prediction.model_validate({**queued, "info": {**info, "dtype": "uint8"}, "stage": "queued", **fields})


def read_raster(content: bytes):
    with rasterio.MemoryFile(content) as mem, mem.open() as ds:
        return ds.read(), ds.crs, ds.transform


def test_geotiff_round_trip_keeps_crs_and_transform(client, tmp_path):
    rgb = road_image(300, 420)
    src = write_geotiff(tmp_path / "scene.tif", rgb)
    with open(src, "rb") as fh:
        r = client.post("/api/v1/predictions", files={"file": ("scene.tif", fh, "image/tiff")})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "done" and body["info"]["georeferenced"] and body["info"]["crs"] == "EPSG:32611"
    assert {"mask.png", "mask.tif", "overlay.png", "probability.tif", "probability.png", "roads.geojson"} <= set(
        body["links"]
    )
    with rasterio.open(src) as ds:
        crs, transform = ds.crs, ds.transform
    for name in ("mask.tif", "probability.tif"):
        content = client.get(body["links"][name]).content
        data, out_crs, out_transform = read_raster(content)
        assert out_crs == crs and out_transform == transform and data.shape[1:] == (300, 420)
        with rasterio.MemoryFile(content) as mem, mem.open() as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    probability, _, _ = read_raster(client.get(body["links"]["probability.tif"]).content)
    mask, _, _ = read_raster(client.get(body["links"]["mask.png"]).content)
    assert mask.shape == (1, 300, 420) and set(np.unique(mask)) <= {0, 255}
    # Probabilities are stored in steps of 2**-16, and the mask is exactly those at or above the threshold.
    assert np.array_equal(probability * 2**16, np.round(probability * 2**16)) and len(np.unique(probability)) > 2
    assert np.array_equal(mask[0] == 255, probability[0] >= body["threshold"])
    assert (mask[0, 66, 100:300] == 255).all()  # a dark road row
    assert (mask[0, 120:200, 120:200] == 0).all()  # light ground between roads
    overlay = np.asarray(Image.open(io.BytesIO(client.get(body["links"]["overlay.png"]).content)))
    assert overlay.shape == (300, 420, 4) and (overlay[..., 3] == mask[0]).all()
    roads = client.get(body["links"]["roads.geojson"]).json()
    assert roads["type"] == "FeatureCollection" and roads["features"]
    # Route in lon/lat between two points of the road at row 66, 200 px apart (0.5 m pixels -> ~100 m).
    with rasterio.open(src) as ds:
        from pyproj import Transformer

        to_lonlat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        start, end = (to_lonlat.transform(*(ds.transform @ (x, 66))) for x in (110, 310))
    r = client.post(body["links"]["self"] + "/route", json={"start": start, "end": end, "crs": "EPSG:4326"})
    assert r.status_code == 200, r.text
    props = r.json()["properties"]
    assert props["length_m"] == pytest.approx(100, rel=0.1)
    xs = [x for x, _ in props["pixel_coordinates"]]
    assert min(xs) == pytest.approx(110, abs=3) and max(xs) == pytest.approx(310, abs=3)


def test_png_prediction_and_pixel_route(client):
    r = client.post("/api/v1/predictions", files={"file": ("roads.png", png_bytes(road_image(256, 256)), "image/png")})
    assert r.status_code == 201, r.text
    body = r.json()
    assert not body["info"]["georeferenced"] and "mask.tif" not in body["links"]
    assert body["model"] == {"backend": "embedded", "model_name": "roads", "model_version": 1}
    # Along the vertical road at x = 60..72, then across the horizontal one at y = 210..222.
    r = client.post(body["links"]["self"] + "/route", json={"start": [66, 20], "end": [200, 216]})
    assert r.status_code == 200, r.text
    props = r.json()["properties"]
    assert props["length_px"] == pytest.approx((216 - 20) + (200 - 66), rel=0.1)
    page = client.get(f"/ui/predictions/{body['id']}")
    assert page.status_code == 200 and body["links"]["overlay.png"] in page.text


def test_page_layers_match_the_upload_across_rows_of_windows(client, monkeypatch):
    """image.png is the upload pixel for pixel and the overlay is the mask, band after band of windows."""
    from roadseg.config import get_settings

    monkeypatch.setenv("ROADSEG_PREDICT_WINDOW", "128")  # 5 rows of 3 windows on 420 x 300 px
    monkeypatch.setenv("ROADSEG_PREDICT_OVERLAP", "32")
    get_settings.cache_clear()
    rgb = road_image(420, 300, seed=3)
    body = client.post("/api/v1/predictions", files={"file": ("rows.png", png_bytes(rgb), "image/png")}).json()
    assert body.get("windows_total") == 5 * 3, body

    def layer(name: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(client.get(body["links"][name]).content)))

    mask, overlay = layer("mask.png"), layer("overlay.png")
    assert np.array_equal(layer("image.png"), rgb)
    assert 0.05 < (mask == 255).mean() < 0.5  # the roads, found in every band
    assert np.array_equal(overlay[..., 3] == 255, mask == 255) and (overlay[mask == 255, :3] == (255, 0, 200)).all()


def test_example_image_needs_no_upload(client):
    r = client.post("/api/v1/predictions/example")
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["info"]["width"], body["info"]["height"]) == (768, 768) and body["input_name"] == "example.png"
    mask = np.asarray(Image.open(io.BytesIO(client.get(body["links"]["mask.png"]).content)))
    assert mask[:, 140:200].max() == 255  # the drawn side street at x ~ 140..180 is found
    # The page's panel polls the job (predicted right after the answer), then shows the viewer.
    panel = client.post("/ui/predictions/example").text
    job_id = panel.split('hx-get="/ui/predictions/')[1].split('"')[0]
    assert "overlay.png" in client.get(f"/ui/predictions/{job_id}").text


def test_health_and_model_card(client):
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "backend": "embedded", "model_name": "roads", "model_version": 1}
    card = client.get("/api/v1/model").json()
    assert card["backbone"] == "dark-pixels (test model)" and card["threshold"] == 0.5
    assert "v1" in client.get("/ui/model").text
    assert client.get("/docs").status_code == 200 and "/api/v1/predictions" in client.get("/openapi.json").text


def truncated_png() -> bytes:
    data = png_bytes(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    return data[: len(data) // 2]


def huge_header_tiff(tmp_path) -> bytes:
    """A valid, sparse GeoTIFF whose header declares 100000 x 100000 pixels (a few KB on disk)."""
    path = tmp_path / "huge.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=100_000, height=100_000, count=3, dtype="uint8", tiled=True, SPARSE_OK=True
    ):
        pass
    return path.read_bytes()


@pytest.mark.parametrize(
    "name,make,status,words",
    [
        ("notes.txt", lambda tmp: b"this is not an image\n" * 50, 400, "not a readable image"),
        ("cut.png", lambda tmp: truncated_png(), 400, "corrupt or truncated"),
        ("empty.png", lambda tmp: b"", 400, "empty"),
        ("huge.tif", huge_header_tiff, 413, "exceeds the limit"),
    ],
)
def test_bad_uploads_are_clear_4xx_and_leave_nothing(client, tmp_path, name, make, status, words):
    r = client.post("/api/v1/predictions", files={"file": (name, make(tmp_path), "application/octet-stream")})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert "/predictions/" not in r.json()["detail"]  # no server-side storage path in the message
    assert stored_keys() == []
    ui = client.post("/ui/predictions", files={"file": (name, make(tmp_path), "application/octet-stream")})
    assert ui.status_code == status and 'role="alert"' in ui.text and words in ui.text
    assert stored_keys() == []
    assert client.get("/healthz").status_code == 200  # still serving


def test_route_and_id_errors(client):
    body = client.post("/api/v1/predictions", files={"file": ("r.png", png_bytes(road_image(200, 200)), "image/png")})
    self_url = body.json()["links"]["self"]
    outside = client.post(self_url + "/route", json={"start": [10, 10], "end": [500, 20]})
    assert outside.status_code == 400 and "outside the image" in outside.json()["detail"]
    lonlat = client.post(self_url + "/route", json={"start": [10, 10], "end": [20, 20], "crs": "EPSG:4326"})
    assert lonlat.status_code == 400 and "georeferenced" in lonlat.json()["detail"]
    far = client.post(self_url + "/route", json={"start": [130, 130], "end": [66, 20]})
    assert far.status_code == 422
    malformed = client.post(self_url + "/route", json={"start": [1]})
    assert malformed.status_code == 422
    for url in ("/api/v1/predictions/20260101-000000000000", "/api/v1/predictions/nope/files/mask.png"):
        r = client.get(url)
        assert r.status_code == 404 and "no prediction with id" in r.json()["detail"]
    assert client.post("/api/v1/predictions/nope/route", json={"start": [1, 1], "end": [2, 2]}).status_code == 404
    assert client.get(self_url + "/files/status.json").status_code == 404
    assert client.get(self_url + "/files/..%2F..%2Fsecret").status_code == 404
    assert client.get("/api/v1/predictions/..%2Fx").status_code in (400, 404)
    assert json.loads(get_storage().read_text(f"predictions/{body.json()['id']}/status.json"))["status"] == "done"


def test_gateway_starts_without_a_model_and_serves_the_first_export(settings_env, tmp_path):
    import shutil

    models = tmp_path / "models"
    models.mkdir()
    app = create_app(predictor=EmbeddedPredictor(models, require=False), storage=get_storage())
    with local_client(app) as client:
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "no model"
        r = client.post("/api/v1/predictions", files={"file": ("a.png", png_bytes(road_image(64, 64)), "image/png")})
        assert r.status_code == 503 and "no model version" in r.json()["detail"]
        assert stored_keys() == []
        shutil.copytree(dark_model() / "1", models / "1")
        assert client.get("/healthz").json()["model_version"] == 1
        r = client.post("/api/v1/predictions", files={"file": ("a.png", png_bytes(road_image(64, 64)), "image/png")})
        assert r.status_code == 201


def test_model_card_fragment_names_resolution_and_test_time_augmentation():
    from roadseg.gateway.fragments import model_card

    html = model_card({"name": "roads", "pixel_size_m": 1.0, "tta": "flip", "serving": {"model_version": 3}})
    assert "<dd>roads v3</dd>" in html and "<dt>Pixel size</dt><dd>1 m</dd>" in html
    assert "<dt>Test-time augmentation</dt><dd>flip</dd>" in html
    html = model_card({"name": "roads", "pixel_size_m": 1.0, "pixel_size_range_m": [0.3, 1.5]})
    assert "<dt>Pixel size</dt><dd>0.3\u20131.5 m</dd>" in html
    assert "Test-time" not in model_card({"name": "roads", "tta": "none"})
    two = {"outputs": ["surface", "band"], "thresholds": {"surface": 0.31, "band": 0.27}, "band_width_m": 7.0}
    html = model_card({"name": "roads", **two})
    assert "<dt>Outputs (threshold)</dt><dd>road surface at 0.31; centreline band (7.0 m) at 0.27</dd>" in html


def test_fragments_escape_what_they_show():
    """The fragments' templates are autoescaped: text from a card, a record or an error never becomes markup."""
    from roadseg.gateway.fragments import error, model_card, prediction

    evil = "<img src=x onerror=alert(1)>"
    assert error(evil) == (
        '<div class="error" role="alert"><strong>Error:</strong> &lt;img src=x onerror=alert(1)&gt;</div>'
    )
    assert "<img" not in model_card({"name": evil, "backbone": evil, "created": evil})
    assert "<img" not in prediction(shown(id="x", status="failed", error=evil, links={}))
    running = prediction(shown(id='"x', status="running", stage=evil, links={}))
    assert "<img" not in running and 'hx-get="/ui/predictions/&#34;x"' in running


def test_test_time_augmentation_is_a_per_request_choice_the_version_must_offer(client):
    """The test model's card offers only ``none`` (its own): ``flip`` is refused before anything is stored."""
    image = ("a.png", png_bytes(road_image(64, 64)), "image/png")
    fast = client.post("/api/v1/predictions", files={"file": image}, data={"tta": "none"})
    assert fast.status_code == 201 and fast.json()["tta"] == "none"
    assert set(fast.json()["timings"]) == {"upload", "predict", "pngs", "store"}  # "roads" follows the answer
    refused = client.post("/api/v1/predictions", files={"file": image}, data={"tta": "flip"})
    assert refused.status_code == 400
    assert refused.json()["detail"] == "roads v1 offers test-time augmentation none; got 'flip'"
    assert client.post("/api/v1/predictions", files={"file": image}, data={"tta": "d8"}).status_code == 422
    assert [key.split("/")[1] for key in stored_keys() if key.endswith("status.json")] == [fast.json()["id"]]


def test_page_panels_show_progress_per_window_and_where_the_time_went(client):
    from roadseg.gateway.fragments import prediction

    running = prediction(
        shown(id="x", status="running", progress=0.25, stage="predicting", windows_done=4, windows_total=16, links={})
    )
    assert "window 4 of 16" in running and 'value="25"' in running and "every 1s" in running
    panel = client.post("/ui/predictions", files={"file": ("a.png", png_bytes(road_image(64, 64)), "image/png")})
    assert panel.status_code == 200 and 'hx-get="/ui/predictions/' in panel.text  # polls; predicted after the answer
    job_id = panel.text.split('hx-get="/ui/predictions/')[1].split('"')[0]
    done = client.get(f"/ui/predictions/{job_id}").text
    assert 'id="timings"' in done and "predict " in done and "road graph " in done


def test_the_road_network_is_built_after_the_answer_or_on_first_use(client, settings_env, predictor, monkeypatch):
    """The answer comes once the rasters are stored; the graph follows it (or the first route/download builds it)."""
    from roadseg.config import get_settings
    from roadseg.gateway.jobs import create_job, prediction_store, run_job

    started = time.perf_counter()
    r = client.post("/api/v1/predictions", files={"file": ("roads.png", png_bytes(road_image(256, 256)), "image/png")})
    elapsed = time.perf_counter() - started  # the TestClient runs the background task before it returns
    body = r.json()
    assert r.status_code == 201 and body["roads"] == "pending" and "roads" not in body["timings"]
    assert "roads.geojson" in body["links"] and "roads.geojson" not in body["files"]
    after = client.get(body["links"]["self"]).json()  # the background task ran after the response
    assert after["roads"] == "ready" and "roads.geojson" in after["files"]
    # The graph's own seconds (to the millisecond): some time, within the request that ran it.
    assert 0 < after["timings"]["roads"] <= elapsed
    assert set(after["timings"]) == set(body["timings"]) | {"roads"}
    # The page: only the road line polls while the graph is built, then swaps in the timings with "road graph".
    from roadseg.gateway.fragments import prediction

    pending = prediction(shown(**body))
    assert f'hx-get="/ui/predictions/{body["id"]}/roads" hx-trigger="every 1s"' in pending
    ready = client.get(f"/ui/predictions/{body['id']}/roads").text
    assert "Road network: ready" in ready and 'id="timings" hx-swap-oob="true"' in ready and "road graph " in ready

    # A job nobody built a graph for (the worker died right after the rasters): the first route builds it.
    storage, settings = get_storage(), get_settings()
    job = create_job(storage, io.BytesIO(png_bytes(road_image(256, 256))), "late.png", settings)
    run_job(job.id, storage, predictor, settings)
    assert not storage.exists(f"predictions/{job.id}/roads.geojson")
    r = client.post(f"/api/v1/predictions/{job.id}/route", json={"start": [66, 20], "end": [200, 216]})
    assert r.status_code == 200 and r.json()["properties"]["length_px"] == pytest.approx(330, rel=0.1)
    record = prediction_store(storage).get(job.id)
    assert record.roads == "ready" and "roads.geojson" in record.files

    # Too large for one process: the predict workers build it in shards; until then a route says so.
    monkeypatch.setenv("ROADSEG_GRAPH_MAX_PIXELS", "1000")
    get_settings.cache_clear()
    try:
        big = client.post("/api/v1/predictions", files={"file": ("b.png", png_bytes(road_image(64, 64)), "image/png")})
        assert big.json()["roads"] == "pending" and "roads.geojson" in big.json()["links"]
        r = client.post(big.json()["links"]["self"] + "/route", json={"start": [1, 1], "end": [2, 2]})
        assert r.status_code == 400 and "built by the predict workers in shards" in r.json()["detail"]
        assert client.get(big.json()["links"]["self"] + "/files/roads.geojson").status_code == 400
    finally:
        get_settings.cache_clear()


def test_a_two_output_model_serves_surface_and_centreline_at_the_given_pixel_size(settings_env):
    """Both masks come back (API, page layers with toggles, downloads); the road network follows the
    centreline; a plain image's pixel size resamples it to the model's 1 m; a bad pixel size is a 4xx."""
    predictor = EmbeddedPredictor(dark_two_output_model() / "1")
    with local_client(create_app(predictor=predictor, storage=get_storage())) as client:
        image = png_bytes(road_image(300, 300))
        r = client.post(
            "/api/v1/predictions", files={"file": ("a.png", image, "image/png")}, data={"pixel_size_m": "0.5"}
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["pixel_size_m"] == 0.5 and body["resampling"]["factor"] == 2.0
        assert body["centerline_threshold"] == 0.5
        assert {"centerline.png", "centerline_overlay.png", "centerline_probability.tif"} <= set(body["links"])
        surface = np.asarray(Image.open(io.BytesIO(client.get(body["links"]["mask.png"]).content)))
        line = np.asarray(Image.open(io.BytesIO(client.get(body["links"]["centerline.png"]).content)))
        assert surface.shape == line.shape == (300, 300)
        road_rows = (surface[:, 100:200] == 255).all(axis=1)
        line_rows = (line[:, 100:200] == 255).all(axis=1)
        assert 0 < line_rows.sum() < road_rows.sum()  # the band is narrower than the dark surface
        assert not (line_rows & ~road_rows).any()
        roads = client.get(body["links"]["roads.geojson"]).json()
        assert roads["features"]

        panel = client.get(f"/ui/predictions/{body['id']}").text
        assert 'id="centerline-overlay"' in panel and 'data-layer="centerline-overlay"' in panel
        assert "Centreline PNG" in panel

        upload = {"file": ("a.png", image, "image/png")}
        for bad in ("0", "-1", "nan", "inf"):
            r = client.post("/api/v1/predictions", files=upload, data={"pixel_size_m": bad})
            assert r.status_code == 400 and "pixel size must be above 0" in r.json()["detail"], (bad, r.text)
        r = client.post("/ui/predictions", files=upload, data={"pixel_size_m": "x"})
        assert r.status_code == 400 and "pixel size must be a number of metres or &#39;auto&#39;" in r.text
