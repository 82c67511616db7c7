"""Fixtures of the gateway tests that run the app in-process: the test model and a client of the app."""

from __future__ import annotations

import pytest
from roadseg.gateway.api import create_app
from roadseg.inference.predictor import EmbeddedPredictor
from roadseg.storage import get_storage
from utils.clients import local_client
from utils.gateway import dark_model


@pytest.fixture(scope="module")
def predictor():
    """The deterministic dark-is-road test model (utils.gateway.dark_model), loaded once per test module."""
    return EmbeddedPredictor(dark_model() / "1")


@pytest.fixture
def client(settings_env, predictor):
    """A client of the gateway app on fresh local storage, as a loopback caller."""
    with local_client(create_app(predictor=predictor, storage=get_storage())) as c:
        yield c
