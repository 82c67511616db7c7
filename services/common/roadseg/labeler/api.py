"""The labeler HTTP service (port 8002; ``services/labeler/main.py`` serves it).

Review pages and their JSON twins (:mod:`.endpoints.review`), label runs started on the Celery
workers (:mod:`.endpoints.label_runs`) and dataset export (:mod:`.endpoints.datasets`),
and the missing-roads review (:mod:`roadseg.missing.endpoints`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from roadseg.http_api import create_service_app
from roadseg.labeler.endpoints import datasets, label_runs, review
from roadseg.missing import endpoints as missing
from roadseg.storage import Storage

STATIC = Path(__file__).resolve().parents[1] / "static"


def create_app(storage: Storage | None = None) -> FastAPI:
    """The labeler app; ``storage`` defaults to the configured one (``ROADSEG_STORAGE_URL``)."""
    app = create_service_app(
        "roadseg label review",
        "Review road masks made by the labeler: accept or reject tiles; the dataset export leaves out "
        "rejected tiles and flagged tiles nobody accepted. Start label runs and export datasets. Find the roads a "
        "map is missing (/missing): predicted network vs existing vectors, reviewed, exported for OSM editors.",
        storage=storage,
        routers=[review.pages, review.api, label_runs.router, datasets.router, missing.pages, missing.api],
    )
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
