"""The ingest HTTP service (``services/ingest/main.py`` serves it): scenes in, tiles out.

Routers live in :mod:`roadseg.ingest.endpoints`; this module assembles the app and refuses
oversize uploads before their bodies are received.
"""

from __future__ import annotations

from fastapi import FastAPI

from roadseg.http_api import create_service_app
from roadseg.ingest.endpoints import scenes
from roadseg.storage import Storage

#: Multipart framing allowed on top of ``max_upload_bytes`` before the announced length is refused.


def create_app(storage: Storage | None = None) -> FastAPI:
    """The ingest app; ``storage`` defaults to the configured one (``ROADSEG_STORAGE_URL``)."""
    app = create_service_app(
        "roadseg ingest",
        "Upload GeoTIFF / COG / JPEG 2000 / PNG / JPEG scenes (or point at gs:// or file:// URIs); "
        "they are cut into georeferenced 8-bit RGB tiles with a manifest.",
        storage=storage,
        routers=[scenes.router],
    )
    return app
