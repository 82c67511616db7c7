"""The gateway HTTP service: prediction and route API, model card, health, and the web page.

JSON API under ``/api/v1`` (OpenAPI at ``/docs``); the page is static HTML + htmx, and the
``/ui/...`` routes return the HTML fragments htmx swaps in (same logic as the JSON routes).
Uploads up to ``sync_predict_max_pixels`` are predicted during the request (201); larger ones
are queued on the ``predict`` Celery queue (202) and report progress in their status record.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, BinaryIO, Literal

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from roadseg import __version__
from roadseg.config import get_settings
from roadseg.errors import InvalidInput, NotFound, RoadsegError
from roadseg.gateway import fragments
from roadseg.gateway.example import example_png
from roadseg.gateway.predictions import KIND, MEDIA_TYPES, create_job, run_job
from roadseg.gateway.predictor import Predictor, get_predictor
from roadseg.gateway.routing import route_between
from roadseg.jobs import DONE, JobStore
from roadseg.storage import Storage, get_storage

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
VENDOR = Path(__file__).parents[1] / "static" / "vendor"


class QueueUnavailable(RoadsegError):
    """The Celery broker cannot be reached; large images cannot be queued right now."""

    status_code = 503


class RouteRequest(BaseModel):
    """Two points on the predicted road network."""

    start: tuple[float, float] = Field(description="First point: (x, y) pixel column/row, or (lon, lat).")
    end: tuple[float, float] = Field(description="Second point, same convention as ``start``.")
    crs: Literal["pixel", "EPSG:4326"] = Field(
        default="pixel", description="``pixel`` (x right, y down from the top-left corner) or ``EPSG:4326`` lon/lat."
    )


def links(job_id: str, record: dict[str, Any]) -> dict[str, str]:
    """API paths of a prediction's status record (``self``) and of each output file it has."""
    base = f"/api/v1/predictions/{job_id}"
    return {"self": base, **{name: f"{base}/files/{name}" for name in record.get("files", [])}}


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A status record as the API shows it (with file links)."""
    return {**record, "links": links(record["id"], record)}


def create_app(predictor: Predictor | None = None, storage: Storage | None = None) -> FastAPI:
    """The gateway app; ``predictor``/``storage`` default to the configured ones (loaded at startup)."""
    get_settings()  # an impossible ROADSEG_* setting stops the service here (InvalidSettings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.predictor = predictor or get_predictor()
        app.state.storage = storage or get_storage()
        yield

    app = FastAPI(
        title="roadseg gateway",
        version=__version__,
        description="Upload an aerial or satellite image, get its road mask, road network and routes.",
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/vendor", StaticFiles(directory=VENDOR), name="vendor")

    def jobs(request: Request) -> JobStore:
        return JobStore(request.app.state.storage, KIND)

    @app.exception_handler(RoadsegError)
    async def roadseg_error(request: Request, exc: RoadsegError):
        if request.url.path.startswith("/ui/"):
            return HTMLResponse(fragments.error(str(exc)), status_code=exc.status_code)
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz", tags=["service"])
    def healthz(request: Request) -> JSONResponse:
        """Which backend and model version serve predictions; 503 while there is no model to serve."""
        predictor: Predictor = request.app.state.predictor
        predictor.refresh()
        ready = predictor.version is not None
        return JSONResponse({"status": "ok" if ready else "no model", **predictor.describe()}, 200 if ready else 503)

    @app.get("/api/v1/model", tags=["model"])
    def model_card(request: Request) -> dict[str, Any]:
        """The serving model's card (version, backbone, threshold, metrics, training data)."""
        predictor: Predictor = request.app.state.predictor
        predictor.refresh()
        settings = get_settings()
        return {**predictor.card, "serving": predictor.describe(), "threshold": predictor.threshold(settings.threshold)}

    def submit(request: Request, fileobj: BinaryIO, filename: str) -> tuple[dict[str, Any], int]:
        """Store and validate an upload, then predict it now (small) or queue it (large)."""
        settings = get_settings()
        storage: Storage = request.app.state.storage
        record = create_job(storage, fileobj, filename, settings)
        if record["info"]["width"] * record["info"]["height"] <= settings.sync_predict_max_pixels:
            try:
                return run_job(record["id"], storage, request.app.state.predictor, settings), 201
            except RoadsegError:
                # Input that cannot be predicted leaves nothing behind: the client got the error.
                storage.delete_prefix(jobs(request).key(record["id"]))
                raise
        from roadseg.gateway.tasks import predict

        try:
            predict.delay(record["id"])
        except Exception as exc:  # broker down: say so, and keep no job that nobody will run
            storage.delete_prefix(jobs(request).key(record["id"]))
            raise QueueUnavailable(f"cannot queue the prediction (task queue unavailable): {exc}") from exc
        return record, 202

    @app.post("/api/v1/predictions", tags=["predictions"], status_code=201)
    def create_prediction(
        request: Request, file: UploadFile = File(description="PNG, JPEG, TIFF/GeoTIFF or JPEG 2000 image")
    ) -> JSONResponse:
        """Upload an image. 201 with the finished prediction, or 202 when it was queued (poll its ``self`` link)."""
        record, status = submit(request, file.file, file.filename or "upload")
        return JSONResponse(public(record), status_code=status)

    @app.post("/api/v1/predictions/example", tags=["predictions"], status_code=201)
    def create_example_prediction(request: Request) -> JSONResponse:
        """Predict the built-in synthetic example image (drawn by code: no upload needed)."""
        record, status = submit(request, io.BytesIO(example_png()), "example.png")
        return JSONResponse(public(record), status_code=status)

    @app.get("/api/v1/predictions/{job_id}", tags=["predictions"])
    def get_prediction(request: Request, job_id: str) -> dict[str, Any]:
        """Status, progress, image facts and links to the outputs of one prediction."""
        return public(jobs(request).get(job_id))

    @app.get("/api/v1/predictions/{job_id}/files/{name}", tags=["predictions"])
    def get_file(request: Request, job_id: str, name: str) -> StreamingResponse:
        """Download one output file of a prediction.

        One of: mask.png (0/255), overlay.png (RGBA roads), image.png, probability.png/.tif, mask.tif, roads.geojson.
        """
        record = jobs(request).get(job_id)
        if name not in MEDIA_TYPES or name not in record.get("files", []):
            raise NotFound(f"prediction {job_id} has no file {name!r}")
        storage: Storage = request.app.state.storage
        size = storage.size(jobs(request).key(job_id, name))
        fh = storage.open(jobs(request).key(job_id, name))
        return StreamingResponse(
            _chunks(fh),
            media_type=MEDIA_TYPES[name],
            headers={"Content-Length": str(size), "Content-Disposition": f'inline; filename="{job_id}-{name}"'},
        )

    @app.post("/api/v1/predictions/{job_id}/route", tags=["predictions"])
    def route(request: Request, job_id: str, body: RouteRequest) -> dict[str, Any]:
        """Shortest path along the predicted roads between two points; length in metres when georeferenced."""
        record = jobs(request).get(job_id)
        if record["status"] != DONE:
            raise InvalidInput(f"prediction {job_id} is {record['status']}, not done")
        if "roads.geojson" not in record.get("files", []):
            raise InvalidInput(f"prediction {job_id} has no road network ({record.get('roads_note')})")
        storage: Storage = request.app.state.storage
        return route_between(
            storage, jobs(request).key(job_id, "roads.geojson"), record["info"], body.start, body.end, body.crs
        )

    # ------------------------------------------------------------------ htmx fragments
    @app.get("/ui/model", include_in_schema=False)
    def ui_model(request: Request) -> HTMLResponse:
        return HTMLResponse(fragments.model_card(model_card(request)))

    @app.post("/ui/predictions", include_in_schema=False)
    def ui_create(request: Request, file: UploadFile = File()) -> HTMLResponse:
        record, _ = submit(request, file.file, file.filename or "upload")
        return HTMLResponse(fragments.prediction(public(record)))

    @app.post("/ui/predictions/example", include_in_schema=False)
    def ui_example(request: Request) -> HTMLResponse:
        record, _ = submit(request, io.BytesIO(example_png()), "example.png")
        return HTMLResponse(fragments.prediction(public(record)))

    @app.get("/ui/predictions/{job_id}", include_in_schema=False)
    def ui_prediction(request: Request, job_id: str) -> HTMLResponse:
        return HTMLResponse(fragments.prediction(public(jobs(request).get(job_id))))

    return app


def _chunks(fh, size: int = 1024 * 1024):
    """Stream a storage object in 1 MiB chunks and close it at the end."""
    with fh:
        while chunk := fh.read(size):
            yield chunk
