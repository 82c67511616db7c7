"""The label review page (FastAPI + htmx, port 8002): look at masks, accept or reject them.

Tiles are shown as image + mask overlay, flagged ones first with the reasons spelled out; one
key (``a`` accept, ``r`` reject, ``u`` undo) or one click records the decision in storage and
moves to the next tile. The dataset export reads the same decisions, replacing the seed's
"delete broken masks by hand" step.

JSON endpoints sit beside the HTML ones so scripts and tests can drive a review too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from roadseg import __version__
from roadseg.config import get_settings
from roadseg.errors import NotFound, RoadsegError
from roadseg.jobs import JobStore
from roadseg.labeler import quality
from roadseg.labeler.decisions import get_decisions, set_decision
from roadseg.labeler.overlay import overlay, png_bytes
from roadseg.labeler.run import KIND, manifest_key
from roadseg.labeler.runs_api import router as runs_router
from roadseg.storage import Storage, get_storage, storage_from_url

HERE = Path(__file__).resolve().parent
STATIC = HERE.parent / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))


def load_manifest(storage: Storage, run_id: str) -> dict:
    """A label run's manifest; raises :class:`NotFound` explaining the likely reasons when it is missing."""
    try:
        return json.loads(storage.read_text(manifest_key(run_id)))
    except NotFound as exc:
        raise NotFound(f"label run {run_id!r} has no manifest yet (still running, failed, or wrong id)") from exc


def tile_entry(manifest: dict, tile_id: str) -> dict:
    """The manifest entry of one tile; raises :class:`NotFound` for a tile the run does not have."""
    for entry in manifest["tiles"]:
        if entry["id"] == tile_id:
            return entry
    raise NotFound(f"run {manifest['run_id']} has no tile {tile_id!r}")


def review_order(manifest: dict) -> list[dict]:
    """Flagged tiles first (most flags first), then the rest, each group in grid order."""
    return sorted(manifest["tiles"], key=lambda e: (-len(e["flags"]), e["id"]))


def create_app(storage: Storage | None = None) -> FastAPI:
    """The review app; ``storage`` defaults to the configured one (``ROADSEG_STORAGE_URL``)."""
    get_settings()  # an impossible ROADSEG_* setting stops the service here (InvalidSettings)
    app = FastAPI(
        title="roadseg label review",
        version=__version__,
        description="Review road masks made by the labeler: accept or reject tiles; the dataset export "
        "leaves out rejected tiles and flagged tiles nobody accepted.",
    )
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    def store() -> Storage:
        return storage or get_storage()

    app.state.store = store  # the label-run router reads the same storage

    @app.exception_handler(RoadsegError)
    async def _roadseg_error(request: Request, exc: RoadsegError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get("/", response_class=HTMLResponse, tags=["pages"])
    def runs_page(request: Request) -> HTMLResponse:
        runs = JobStore(store(), KIND).list()
        return templates.TemplateResponse(request, "runs.html", {"runs": runs})

    @app.get("/runs/{run_id}", response_class=HTMLResponse, tags=["pages"])
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        manifest = load_manifest(store(), run_id)
        decided = get_decisions(store(), run_id)
        context = {
            "run": manifest,
            "tiles": review_order(manifest),
            "decisions": decided,
            "reasons": quality.REASONS,
            "undecided": len(manifest["tiles"]) - len(decided),
        }
        return templates.TemplateResponse(request, "run.html", context)

    @app.get("/runs/{run_id}/tiles/{tile_id}/overlay.png", tags=["pages"])
    def overlay_png(run_id: str, tile_id: str) -> Response:
        st = store()
        manifest = load_manifest(st, run_id)
        entry = tile_entry(manifest, tile_id)
        scene_storage = storage_from_url(manifest["scene_storage"]) if manifest.get("scene_storage") else st
        with scene_storage.open_raster(entry["tile_key"]) as ds:
            image = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
        with st.open_raster(entry["mask_key"]) as ds:
            mask = ds.read(1)
        return Response(
            png_bytes(overlay(image, mask)), media_type="image/png", headers={"Cache-Control": "max-age=3600"}
        )

    @app.post("/runs/{run_id}/tiles/{tile_id}/decision", response_class=HTMLResponse, tags=["review"])
    def decide(
        request: Request, run_id: str, tile_id: str, decision: str = Form(...), reviewer: str | None = Form(None)
    ) -> HTMLResponse:
        """Record ``accept``, ``reject`` or ``clear`` for a tile; returns the tile's card (htmx swaps it in)."""
        st = store()
        entry = tile_entry(load_manifest(st, run_id), tile_id)
        record = set_decision(st, run_id, tile_id, decision, reviewer)
        context = {"run_id": run_id, "tile": entry, "decision": record["decision"], "reasons": quality.REASONS}
        return templates.TemplateResponse(request, "_tile.html", context)

    @app.get("/api/runs/{run_id}/decisions", tags=["review"])
    def decisions_json(run_id: str) -> dict:
        """All decisions of a run and how many tiles are still undecided."""
        manifest = load_manifest(store(), run_id)
        decided = get_decisions(store(), run_id)
        return {"run_id": run_id, "decisions": decided, "undecided": len(manifest["tiles"]) - len(decided)}

    @app.get("/api/runs/{run_id}", tags=["review"])
    def run_json(run_id: str) -> dict:
        """The run's status record (progress, counts, error)."""
        return JobStore(store(), KIND).get(run_id)

    app.include_router(runs_router)
    return app
