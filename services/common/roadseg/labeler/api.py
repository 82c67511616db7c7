"""The labeler room's HTTP app: review pages, label runs and dataset export.

Review pages (:mod:`.endpoints.review`), label runs started on the Celery workers and their
decisions as JSON (:mod:`.endpoints.label_runs`, ``/api/v1/label-runs``) and dataset export
(:mod:`.endpoints.datasets`). The labeler *service* (port 8002) also hosts the missing-roads room:
:mod:`roadseg.label_service` adds its routes, so this room does not import that one (which builds on it).

``/static/`` serves the labeler's own files (``labeler/static``: the review page's script and
styles) and, behind them, the files the services share (``roadseg/static``: vendored htmx, the
missing-roads script).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from roadseg.http_api import create_service_app
from roadseg.labeler.endpoints import datasets, label_runs, review
from roadseg.storage import Storage

#: The labeler's own static files; a name not found there is looked up in the shared ``roadseg/static``.
STATIC = Path(__file__).resolve().parent / "static"


def create_app(storage: Storage | None = None, routers: Sequence[APIRouter] = (), description: str = "") -> FastAPI:
    """The labeler app with more ``routers`` after its own; ``storage`` defaults to ``ROADSEG_STORAGE_URL``."""
    app = create_service_app(
        "roadseg label review",
        "Review road masks made by the labeler: accept or reject tiles; the dataset export leaves out "
        "rejected tiles and flagged tiles nobody accepted. Start label runs and export datasets." + description,
        storage=storage,
        routers=[review.pages, label_runs.router, datasets.router, *routers],
    )
    app.mount("/static", StaticFiles(directory=STATIC, packages=[("roadseg", "static")]), name="static")
    return app
