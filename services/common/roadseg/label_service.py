"""The labeler service's app (port 8002): the labeler room's routes and the missing-roads room it hosts.

Both rooms are served by one process, but the missing-roads room builds on the labeler (its rasterizing,
widths and vector reading), not the other way round; this module, above both, puts them together.
"""

from __future__ import annotations

from fastapi import FastAPI

from roadseg.labeler import api as labeler
from roadseg.missing import endpoints as missing
from roadseg.storage import Storage


def create_app(storage: Storage | None = None) -> FastAPI:
    """The label review service: ``storage`` defaults to the configured one (``ROADSEG_STORAGE_URL``)."""
    return labeler.create_app(
        storage,
        routers=[missing.pages, missing.api],
        description=" Find the roads a map is missing (/missing): predicted network vs existing vectors, "
        "reviewed, exported for OSM editors.",
    )
