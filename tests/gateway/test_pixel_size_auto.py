"""``pixel_size_m=auto`` through the API and the page: the model chooses a plain image's scale, recorded."""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image
from roadseg.gateway.api import create_app
from roadseg.inference.predictor import EmbeddedPredictor
from roadseg.inference.scale import CANDIDATE_FACTORS
from roadseg.storage import get_storage
from utils.clients import local_client
from utils.gateway import dark_two_output_model, road_image


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
