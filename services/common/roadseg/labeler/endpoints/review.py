"""The label review pages (htmx): look at masks, accept or reject them.

Tiles are shown as image + mask overlay, flagged ones first with the reasons spelled out; one
key (``a`` accept, ``r`` reject, ``u`` undo) or one click records the decision in storage and
moves to the next tile. The dataset export reads the same decisions, replacing the seed's
"delete broken masks by hand" step. Programs read a run and its decisions as JSON under
``/api/v1/label-runs/{run_id}`` (:mod:`.label_runs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from roadseg.auth import CallerDep, Role, require
from roadseg.http_api import StorageDep
from roadseg.labeler import quality
from roadseg.labeler.decisions import count_decided, get_decisions, review_order, set_decision, tile_entry
from roadseg.labeler.overlay import overlay, png_bytes
from roadseg.labeler.run import read_manifest, run_store
from roadseg.storage import storage_from_url

templates = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))

pages = APIRouter(tags=["review pages"], dependencies=[require(Role.labeler)])


@pages.get("/", response_class=HTMLResponse)
def runs_page(request: Request, storage: StorageDep) -> HTMLResponse:
    """Every label run, newest first, with links to their review pages."""
    return templates.TemplateResponse(request, "runs.html", {"runs": run_store(storage).list()})


@pages.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str, storage: StorageDep) -> HTMLResponse:
    """The review page of one run: every tile, flagged ones first."""
    manifest = read_manifest(storage, run_id)
    decided = get_decisions(storage, run_id)
    context = {
        "run": manifest,
        "tiles": review_order(manifest),
        "decisions": decided,
        "reasons": quality.REASONS,
        "undecided": len(manifest["tiles"]) - len(decided),
    }
    return templates.TemplateResponse(request, "run.html", context)


@pages.get("/runs/{run_id}/tiles/{tile_id}/overlay.png", response_class=Response)
def overlay_png(run_id: str, tile_id: str, storage: StorageDep) -> Response:
    """The tile's image with its mask drawn over it."""
    manifest = read_manifest(storage, run_id)
    entry = tile_entry(manifest, tile_id)
    scene_storage = storage_from_url(manifest["scene_storage"]) if manifest.get("scene_storage") else storage
    with scene_storage.open_raster(entry["tile_key"]) as ds:
        image = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
    with storage.open_raster(entry["mask_key"]) as ds:
        mask = ds.read(1)
    return Response(png_bytes(overlay(image, mask)), media_type="image/png", headers={"Cache-Control": "max-age=3600"})


@pages.post("/runs/{run_id}/tiles/{tile_id}/decision", response_class=HTMLResponse)
def decide(
    request: Request,
    run_id: str,
    tile_id: str,
    storage: StorageDep,
    identity: CallerDep,
    decision: Annotated[str, Form(description="accept, reject or clear")],
    reviewer: Annotated[str | None, Form(description="Name to record in open local mode (no login)")] = None,
) -> HTMLResponse:
    """Record ``accept``, ``reject`` or ``clear`` for a tile; returns the tile's card (htmx swaps it in).

    The answer also carries the run's undecided count, swapped out of band into the page's "N undecided".

    The decision records who made it: the authenticated identity (API key name or IAP e-mail); only
    in open local mode, where nobody logs in, the form's ``reviewer`` name (or ``local``).
    """
    who = identity.reviewer(reviewer)
    manifest = read_manifest(storage, run_id)
    entry = tile_entry(manifest, tile_id)
    record = set_decision(storage, run_id, tile_id, decision, who)
    context = {
        "run_id": run_id,
        "tile": entry,
        "decision": record["decision"],
        "reasons": quality.REASONS,
        "undecided": len(manifest["tiles"]) - count_decided(storage, run_id),
    }
    return templates.TemplateResponse(request, "_decision.html", context)
