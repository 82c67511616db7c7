"""The labeler HTTP service (port 8002; ``services/labeler/main.py`` serves it).

Review pages (:mod:`.endpoints.review`), label runs started on the Celery workers and their
decisions as JSON (:mod:`.endpoints.label_runs`, ``/api/v1/label-runs``), dataset export
(:mod:`.endpoints.datasets`), and the missing-roads review (:mod:`roadseg.missing.endpoints`).

``/static/`` serves the labeler's own files (``labeler/static``: the review page's script and
styles) and, behind them, the files the services share (``roadseg/static``: vendored htmx, the
missing-roads script).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from roadseg.http_api import create_service_app
from roadseg.labeler.endpoints import datasets, label_runs, review
from roadseg.missing import endpoints as missing
from roadseg.storage import Storage

#: The labeler's own static files; a name not found there is looked up in the shared ``roadseg/static``.
STATIC = Path(__file__).resolve().parent / "static"


def create_app(storage: Storage | None = None) -> FastAPI:
    """The labeler app; ``storage`` defaults to the configured one (``ROADSEG_STORAGE_URL``)."""
    app = create_service_app(
        "roadseg label review",
        "Review road masks made by the labeler: accept or reject tiles; the dataset export leaves out "
        "rejected tiles and flagged tiles nobody accepted. Start label runs and export datasets. Find the roads a "
        "map is missing (/missing): predicted network vs existing vectors, reviewed, exported for OSM editors.",
        storage=storage,
        routers=[review.pages, label_runs.router, datasets.router, missing.pages, missing.api],
    )
    app.mount("/static", StaticFiles(directory=STATIC, packages=[("roadseg", "static")]), name="static")
    return app
