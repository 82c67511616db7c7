"""The web page and the HTML fragments htmx swaps into it (``/ui/...``): the JSON routes' logic, as HTML.

Errors on these routes come back as an HTML error fragment (see :func:`roadseg.gateway.fragments.error`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, Form, UploadFile
from fastapi.responses import FileResponse, HTMLResponse

from roadseg.auth import CallerDep, Role, require
from roadseg.gateway import fragments
from roadseg.gateway.deps import PredictionsDep, PredictorDep
from roadseg.gateway.endpoints.model import served_card
from roadseg.gateway.endpoints.predictions import public, submit
from roadseg.gateway.example import example_png
from roadseg.http_api import SettingsDep, StorageDep
from roadseg.pixel_size import parse_pixel_size

STATIC = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(include_in_schema=False, dependencies=[require(Role.viewer)])


@router.get("/")
def index() -> FileResponse:
    """The page itself (static HTML + htmx)."""
    return FileResponse(STATIC / "index.html")


@router.get("/ui/model", response_class=HTMLResponse)
def ui_model(predictor: PredictorDep, settings: SettingsDep) -> str:
    """The model card panel."""
    return fragments.model_card(served_card(predictor, settings.threshold))


@router.post("/ui/predictions", response_class=HTMLResponse)
def ui_create(
    storage: StorageDep,
    predictor: PredictorDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    identity: CallerDep,
    file: Annotated[UploadFile, File()],
    tta: Annotated[str, Form()] = "",
    pixel_size_m: Annotated[str, Form()] = "",
) -> str:
    """Upload from the page: a panel that polls the job (progress per window) until it shows the result."""
    upload, name = file.file, file.filename or "upload"
    pixel = parse_pixel_size(pixel_size_m)
    record, _ = submit(
        storage, predictor, settings, upload, name, background, identity, tta or None, page=True, pixel_size_m=pixel
    )
    return fragments.prediction(public(record))


@router.post("/ui/predictions/example", response_class=HTMLResponse)
def ui_example(
    storage: StorageDep,
    predictor: PredictorDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    identity: CallerDep,
    tta: Annotated[str, Form()] = "",
) -> str:
    """The built-in example, from the page."""
    example = io.BytesIO(example_png())
    record, _ = submit(
        storage, predictor, settings, example, "example.png", background, identity, tta or None, page=True
    )
    return fragments.prediction(public(record))


@router.get("/ui/predictions/{job_id}", response_class=HTMLResponse)
def ui_prediction(job_id: str, jobs: PredictionsDep) -> str:
    """The prediction panel of one job (polled by htmx while it runs)."""
    return fragments.prediction(public(jobs.get(job_id)))


@router.get("/ui/predictions/{job_id}/roads", response_class=HTMLResponse)
def ui_roads(job_id: str, jobs: PredictionsDep) -> str:
    """The road network's status line (polled while it is built); once ready, also the updated timings."""
    return fragments.roads_status(jobs.get(job_id), oob_timings=True)
