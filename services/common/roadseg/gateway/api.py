"""The gateway HTTP service: prediction and route API, model card, health, and the web page.

JSON API under ``/api/v1`` (OpenAPI at ``/docs``), one router per resource in
:mod:`roadseg.gateway.endpoints`; the page is static HTML + htmx, and its ``/ui/...`` routes
return the HTML fragments htmx swaps in (same logic as the JSON routes).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from pydantic import Field

from roadseg.gateway import fragments
from roadseg.gateway.endpoints import map_page, model, pages, predictions, stac, tiles
from roadseg.http_api import Health, create_service_app
from roadseg.inference.predictor import Predictor, get_predictor
from roadseg.storage import Storage

STATIC = Path(__file__).parent / "static"
VENDOR = Path(__file__).parents[1] / "static" / "vendor"


class GatewayHealth(Health):
    """``ok`` while a model version is loaded (``no model`` and 503 before the first export)."""

    backend: str = Field(description="embedded, tfserving-rest or tfserving-grpc")
    model_name: str
    model_version: int | None


def _health(request: Request) -> GatewayHealth:
    predictor: Predictor = request.app.state.predictor
    predictor.refresh()
    return GatewayHealth(status="ok" if predictor.version is not None else "no model", **predictor.describe())


def create_app(predictor: Predictor | None = None, storage: Storage | None = None) -> FastAPI:
    """The gateway app; ``predictor``/``storage`` default to the configured ones (the model loads at start-up)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.predictor = predictor or get_predictor()
        yield

    app = create_service_app(
        "roadseg gateway",
        "Upload an aerial or satellite image, get its road mask, road network and routes.",
        storage=storage,
        routers=[
            model.router,
            predictions.router,
            tiles.predictions_router,
            tiles.scenes_router,
            stac.predictions_router,
            stac.scenes_router,
            stac.catalog_router,
            pages.router,
            map_page.router,
        ],
        health=_health,
        html_error=fragments.error,
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/vendor", StaticFiles(directory=VENDOR), name="vendor")
    return app
