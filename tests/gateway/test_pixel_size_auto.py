"""``pixel_size_m=auto`` through the API and the page: the model chooses a plain image's scale, recorded."""

from __future__ import annotations

import io
import logging
import time

import numpy as np
import pytest
from PIL import Image
from roadseg.config import get_settings
from roadseg.gateway import sharded
from roadseg.gateway.api import create_app
from roadseg.gateway.jobs import create_job, prediction_store, run_job
from roadseg.inference.predict import plain_pixel_size
from roadseg.inference.predictor import EmbeddedPredictor
from roadseg.inference.scale import CANDIDATE_FACTORS
from roadseg.storage import get_storage
from utils.clients import local_client
from utils.gateway import dark_two_output_model, road_image, with_card

#: Small windows, so a 768 px image has more than 2 rows of them at any candidate factor: 2 shards or more.
SHARDING = {"ROADSEG_PREDICT_WINDOW": "128", "ROADSEG_PREDICT_OVERLAP": "32", "ROADSEG_SHARD_WINDOW_ROWS": "2"}


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_auto_pixel_size_is_chosen_recorded_and_bad_values_are_400(settings_env):
    predictor = EmbeddedPredictor(dark_two_output_model() / "1")
    upload = {"file": ("a.png", _png(road_image(300, 300)), "image/png")}
    with local_client(create_app(predictor=predictor, storage=get_storage())) as client:
        r = client.post("/api/v1/predictions", files=upload, data={"pixel_size_m": "Auto"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["pixel_size_m"] == "auto"
        resampling = body["resampling"]
        assert resampling["estimated"] is True and resampling["factor"] in CANDIDATE_FACTORS
        assert resampling["image_pixel_size_m"] == round(resampling["model_pixel_size_m"] / resampling["factor"], 4)
        mask = np.asarray(Image.open(io.BytesIO(client.get(body["links"]["mask.png"]).content)))
        assert mask.shape == (300, 300) and (mask[:, 100:200] == 255).all(axis=1).any()  # roads found
        assert client.get(body["links"]["roads.geojson"]).json()["features"]

        for bad in ("0", "-1", "nan", "inf", "automatic"):
            r = client.post("/api/v1/predictions", files=upload, data={"pixel_size_m": bad})
            assert r.status_code == 400 and "pixel size must be" in r.json()["detail"], (bad, r.text)
        page = client.post("/ui/predictions", files=upload, data={"pixel_size_m": "auto"})
        assert page.status_code == 200
        panel = page.text.split('hx-get="', 1)[1].split('"', 1)[0]  # the page polls its job's panel
        for _ in range(120):
            if 'id="resampling"' in (html := client.get(panel).text):
                break
            time.sleep(0.5)
        assert "Scale chosen by the model" in html


def test_a_card_with_plain_pixel_size_auto_makes_auto_the_default_of_plain_images(settings_env, tmp_path):
    """No ``pixel_size_m`` for a model whose card says ``plain_pixel_size: auto``: the model chooses the scale,
    as with ``auto``, and the record, the page and the model panel say so."""
    predictor = EmbeddedPredictor(with_card(dark_two_output_model(), tmp_path / "m", plain_pixel_size="auto") / "1")
    upload = {"file": ("a.png", _png(road_image(300, 300)), "image/png")}
    with local_client(create_app(predictor=predictor, storage=get_storage())) as client:
        default = client.post("/api/v1/predictions", files=upload).json()
        given = client.post("/api/v1/predictions", files=upload, data={"pixel_size_m": "auto"}).json()
        assert default["status"] == "done" and default["pixel_size_m"] is None and given["pixel_size_m"] == "auto"
        assert default["resampling"]["estimated"] is True and default["resampling"] == given["resampling"]
        masks = [client.get(body["links"]["mask.png"]).content for body in (default, given)]
        assert masks[0] == masks[1]
        roads = [client.get(body["links"]["roads.geojson"]).json() for body in (default, given)]
        assert roads[0] == roads[1] and roads[0]["features"]
        assert plain_pixel_size(None, default["resampling"]) == 1.0  # the road network's metres: the chosen ones
        html = client.get(f"/ui/predictions/{default['id']}").text
        assert 'Scale chosen by the model (pixel size "auto", its default for plain images)' in html
        assert 'data-plain-pixel-size="auto"' in client.get("/ui/model").text
        assert client.get("/api/v1/model").json()["plain_pixel_size"] == "auto"


def test_without_the_card_field_a_plain_image_given_none_is_the_models_own(settings_env):
    predictor = EmbeddedPredictor(dark_two_output_model() / "1")
    upload = {"file": ("a.png", _png(road_image(300, 300)), "image/png")}
    with local_client(create_app(predictor=predictor, storage=get_storage())) as client:
        body = client.post("/api/v1/predictions", files=upload).json()
        assert body["status"] == "done" and body["pixel_size_m"] is None and body["resampling"] is None
        assert "data-plain-pixel-size" not in client.get("/ui/model").text


@pytest.mark.parametrize("given", ["auto", None], ids=["auto given", "none given, card auto"])
def test_a_sharded_auto_job_asks_the_model_once_and_equals_one_task(settings_env, monkeypatch, caplog, tmp_path, given):
    """A queued plain image cut into shards: its planner chooses the scale, its shards and the join reuse it,
    whether the job asked for ``auto`` or the card made it the default (``plain_pixel_size``)."""
    for key, value in SHARDING.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    settings, storage = get_settings(), get_storage()
    models = dark_two_output_model()
    if given is None:
        models = with_card(models, tmp_path / "models", plain_pixel_size="auto")
    predictor = EmbeddedPredictor(models / "1")
    jobs = prediction_store(storage)
    png = _png(road_image(768, 512))
    caplog.set_level(logging.INFO, logger="roadseg.inference.predict")

    def choices() -> int:
        """Times the model was asked for the scale (ModelWindows.estimated logs each choice)."""
        return sum("scale chosen by the model" in r.getMessage() for r in caplog.records)

    job = create_job(storage, io.BytesIO(png), "a.png", settings, pixel_size_m=given).id
    pending = sharded.plan_job(job, storage, predictor, settings)
    assert pending is not None and len(pending) >= 2, pending
    planned = jobs.get(job).resampling
    assert planned is not None and planned["estimated"] is True and planned["factor"] in CANDIDATE_FACTORS
    assert choices() == 1
    finished = [sharded.run_shard(job, index, storage, predictor, settings) for index in pending]
    assert finished == [False] * (len(pending) - 1) + [True]
    record = sharded.finish_job(job, storage, predictor, settings)
    assert choices() == 1  # the shards and the join used the recorded choice
    assert record.status == "done" and record.pixel_size_m == given and record.resampling == planned

    # The same upload in one task (as a small upload runs): the same choice, the same pixels.
    caplog.clear()
    one_task = create_job(storage, io.BytesIO(png), "a.png", settings, pixel_size_m=given).id
    whole = run_job(one_task, storage, predictor, settings)
    assert choices() == 1 and whole.resampling == planned

    def mask(job_id: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(storage.read_bytes(jobs.key(job_id, "mask.png")))))

    def probability(job_id: str) -> np.ndarray:
        with storage.open_raster(jobs.key(job_id, "probability.tif")) as ds:
            return ds.read()

    assert mask(job).shape == (768, 512) and (mask(job) == 255).any()
    assert np.array_equal(mask(job), mask(whole.id))
    assert np.array_equal(probability(job), probability(whole.id))
    assert record.road_fraction == whole.road_fraction
