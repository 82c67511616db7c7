"""The map page (``/map?prediction=<id>`` or ``/map?scene=<id>``): MapLibre over the tile and STAC routes.

The page is static (``static/map.html`` + ``map.js``, MapLibre vendored under ``/vendor/maplibre-gl/``); it
reads the resource's STAC item for its extent and tile templates, and ``/ui/map/config`` for the basemap. A
basemap (``ROADSEG_MAP_BASEMAP_URL``) is another site: the page's Content-Security-Policy names its origin
for images and fetches, and nothing else leaves the network when it is unset.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import FileResponse

from roadseg.auth import Role, require
from roadseg.http_api import SECURITY_HEADERS, SettingsDep

STATIC = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(include_in_schema=False, dependencies=[require(Role.viewer)])


def page_csp(basemap_url: str | None) -> str:
    """The service's Content-Security-Policy, plus the basemap's origin for images and fetches when set."""
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    if not basemap_url:
        return csp
    parts = urlsplit(basemap_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    csp = csp.replace("img-src 'self' data: blob:", f"img-src 'self' data: blob: {origin}")
    return csp.replace("default-src 'self';", f"default-src 'self'; connect-src 'self' {origin};")


@router.get("/map")
def map_page(settings: SettingsDep) -> FileResponse:
    """The map of one georeferenced prediction or ingested scene (named in the query string)."""
    return FileResponse(STATIC / "map.html", headers={"Content-Security-Policy": page_csp(settings.map_basemap_url)})


@router.get("/ui/map/config")
def map_config(settings: SettingsDep) -> dict[str, str | None]:
    """What the page needs from the settings: the XYZ basemap URL, or none."""
    return {"basemap_url": settings.map_basemap_url}
