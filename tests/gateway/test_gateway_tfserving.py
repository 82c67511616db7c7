"""TF Serving REST and gRPC clients against tests/utils/tfserving_double.py serving our real DeepLabV3+ SavedModel."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from roadseg.config import get_settings
from roadseg.errors import RoadsegError
from roadseg.gateway.api import create_app
from roadseg.inference.predictor import EmbeddedPredictor, GrpcPredictor, RestPredictor, make_predictor
from roadseg.model_versions import latest_version, read_card
from roadseg.storage import get_storage
from utils.clients import local_client
from utils.gateway import real_model
from utils.tfserving_double import TFServingDouble, TFServingGrpcDouble


@pytest.fixture(scope="module")
def model_dir():
    return real_model()


@pytest.fixture(scope="module")
def double_url(model_dir):
    with TFServingDouble(model_dir, "roads") as url:
        yield url


def test_rest_client_matches_the_embedded_model(model_dir, double_url):
    version = latest_version(model_dir)
    rest = RestPredictor(double_url, "roads", None, str(model_dir))
    assert rest.describe() == {"backend": "tfserving-rest", "model_name": "roads", "model_version": version}
    assert rest.card == read_card(model_dir / str(version))  # read from the shared model folder
    windows = np.random.default_rng(0).integers(0, 256, size=(2, 64, 96, 3), dtype=np.uint8)
    remote = rest.predict(windows)
    local = EmbeddedPredictor(model_dir / str(version)).predict(windows)
    assert remote.shape == (2, 64, 96, 1) and remote.dtype == np.float32  # a channel per output (v3: one)
    np.testing.assert_allclose(remote, local, atol=1e-5)
    pinned = RestPredictor(double_url, "roads", version, str(model_dir))
    np.testing.assert_allclose(pinned.predict(windows[:1]), local[:1], atol=1e-5)


def test_grpc_client_matches_the_embedded_model(model_dir):
    version = latest_version(model_dir)
    windows = np.random.default_rng(2).integers(0, 256, size=(3, 48, 80, 3), dtype=np.uint8)
    with TFServingGrpcDouble(model_dir, "roads") as target:
        client = GrpcPredictor(target, "roads", None, str(model_dir))
        assert client.describe() == {"backend": "tfserving-grpc", "model_name": "roads", "model_version": version}
        remote = client.predict(windows)
        with pytest.raises(RoadsegError, match="NOT_FOUND") as err:
            GrpcPredictor(target, "other", None, str(model_dir))
        assert err.value.status_code == 502
    local = EmbeddedPredictor(model_dir / str(version)).predict(windows)
    assert remote.shape == (3, 48, 80, 1)
    np.testing.assert_allclose(remote, local, atol=1e-5)


def test_rest_errors_are_bad_gateway(model_dir, double_url):
    with pytest.raises(RoadsegError, match="Servable not found") as err:
        RestPredictor(double_url, "roads", 777, str(model_dir)).predict(np.zeros((1, 32, 32, 3), np.uint8))
    assert err.value.status_code == 502
    with pytest.raises(RoadsegError, match="unreachable"):
        RestPredictor("http://127.0.0.1:9", "roads", None, str(model_dir))


def test_gateway_predicts_through_tfserving(settings_env, monkeypatch, model_dir, double_url):
    monkeypatch.setenv("ROADSEG_TFSERVING_URL", double_url)
    monkeypatch.setenv("ROADSEG_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("ROADSEG_PREDICT_WINDOW", "128")
    monkeypatch.setenv("ROADSEG_PREDICT_OVERLAP", "32")
    get_settings.cache_clear()
    predictor = make_predictor(get_settings())
    assert isinstance(predictor, RestPredictor)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(buf, "PNG")
    with local_client(create_app(predictor=predictor, storage=get_storage())) as client:
        assert client.get("/healthz").json()["backend"] == "tfserving-rest"
        r = client.post("/api/v1/predictions", files={"file": ("x.png", buf.getvalue(), "image/png")})
        assert r.status_code == 201, r.text
        assert r.json()["model"]["backend"] == "tfserving-rest" and r.json()["windows_total"] == 4
        mask = np.asarray(Image.open(io.BytesIO(client.get(r.json()["links"]["mask.png"]).content)))
        assert mask.shape == (150, 200) and set(np.unique(mask)) <= {0, 255}
