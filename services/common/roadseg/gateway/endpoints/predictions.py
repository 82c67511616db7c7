"""``/api/v1/predictions``: upload an image, follow its prediction, download outputs, route on its roads.

Uploads up to ``sync_predict_max_pixels`` are predicted during the request (201); larger ones
are queued on the ``predict`` Celery queue (202) and report progress in their status record.
``/scenes`` predicts an ingested scene where it is (a city, a mosaic of tiles) on the workers.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Annotated, Any, BinaryIO, Literal

from fastapi import APIRouter, BackgroundTasks, File, Form, Response, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from roadseg import limits
from roadseg.auth import CallerDep, Identity, Role, require
from roadseg.config import Settings
from roadseg.documents import PredictionRecord, Roads, Status
from roadseg.errors import NotFound, PredictionBudgetSpent, RoadsegError
from roadseg.gateway.deps import PredictionsDep, PredictorDep
from roadseg.gateway.example import example_png
from roadseg.gateway.jobs import MEDIA_TYPES, create_scene_job, prediction_store, run_job, submit_prediction
from roadseg.gateway.road_network import build_road_network_quietly, has_road_network, road_network
from roadseg.gateway.routing import route_between
from roadseg.http_api import SettingsDep, StorageDep, enqueue
from roadseg.inference.predictor import Predictor
from roadseg.pixel_size import PixelSize, parse_pixel_size
from roadseg.storage import Storage

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/predictions", tags=["predictions"], dependencies=[require(Role.viewer)])


class Prediction(PredictionRecord):
    """A prediction's status record with API links to itself and to each output file."""

    links: dict[str, str] = Field(description="``self`` and one link per output file.")


class RouteRequest(BaseModel):
    """Two points on the predicted road network."""

    start: tuple[float, float] = Field(description="First point: (x, y) pixel column/row, or (lon, lat).")
    end: tuple[float, float] = Field(description="Second point, same convention as ``start``.")
    crs: Literal["pixel", "EPSG:4326"] = Field(
        default="pixel", description="``pixel`` (x right, y down from the top-left corner) or ``EPSG:4326`` lon/lat."
    )


class Route(BaseModel):
    """GeoJSON Feature (LineString) of the shortest path along the predicted roads."""

    model_config = {"extra": "allow"}

    type: Literal["Feature"]
    geometry: dict[str, Any] = Field(description="LineString in lon/lat (georeferenced) or pixels.")
    properties: dict[str, Any] = Field(description="length_m or length_px, and pixel_coordinates for drawing.")


def public(record: PredictionRecord) -> Prediction:
    """A status record as the API shows it: with ``links`` to itself and its output files.

    ``roads.geojson`` is linked as soon as the job is done: until it is built, asking for it builds it.
    """
    base = f"/api/v1/predictions/{record.id}"
    names = [*record.files, *(["roads.geojson"] if has_road_network(record) else [])]
    links = {"self": base, **{name: f"{base}/files/{name}" for name in dict.fromkeys(names)}}
    return Prediction.model_validate({**record.model_dump(), "links": links})


#: Per-request test-time augmentation: ``none`` is about twice as fast as ``flip``; omitted, the card's.
TTA = Literal["none", "flip"]
PIXEL_SIZE_HELP = (
    "Ground size of a pixel in metres, for plain images (PNG/JPEG) that do not carry it: the image is resampled "
    "to the model's resolution as a georeferenced one is; `auto`: the model chooses the scale at which it finds "
    "roads most surely (recorded in `resampling`). Omitted: the model card's `plain_pixel_size` (`auto` where it "
    "says so), else taken to be the model's own. Georeferenced images use their own."
)


def submit(
    storage: Storage,
    predictor: Predictor,
    settings: Settings,
    upload: BinaryIO,
    filename: str,
    tasks: BackgroundTasks,
    identity: Identity,
    tta: str | None = None,
    page: bool = False,
    pixel_size_m: PixelSize = None,
) -> tuple[PredictionRecord, int]:
    """Predict an upload now, or after the response for the ``page``, or queue it on the ``predict`` workers.

    ``pixel_size_m`` is the ground pixel size of a plain image (ignored for a georeferenced one).

    A prediction finished during the request builds its road network after the response. The caller's
    role bounds the image (``ROADSEG_PREDICT_PIXELS_PER_REQUEST``, 413) and the pixels it may have
    queued (``ROADSEG_QUEUED_PREDICT_PIXELS``, 429); a job left unfinished counts until it is done.
    """
    from roadseg.gateway.tasks import predict

    check_queued_budget(storage, settings, identity)
    per_request = min(settings.max_scene_pixels, settings.predict_pixels_per_request[identity.role.name])
    record, status = submit_prediction(
        storage,
        predictor,
        settings.model_copy(update={"max_scene_pixels": per_request}),
        upload,
        filename,
        lambda job_id: predict.delay(job_id),
        tta,
        (lambda job_id: tasks.add_task(run_job_in_background, job_id, storage, predictor, settings)) if page else None,
        pixel_size_m,
    )
    if record.status == Status.DONE and record.roads == Roads.PENDING:
        tasks.add_task(build_road_network_quietly, record.id, storage, settings)
    elif record.status != Status.DONE:
        pixels = record.info.width * record.info.height
        limits.add_queued_pixels(settings.redis_url, identity.name, record.id, pixels)
    return record, status


def run_job_in_background(job_id: str, storage: Storage, predictor: Predictor, settings: Settings) -> None:
    """:func:`run_job` (then its road network) after the response was sent; outcomes are in the job record."""
    try:
        run_job(job_id, storage, predictor, settings)
    except RoadsegError as exc:
        log.info("prediction %s failed: %s", job_id, exc)
        return
    except Exception:  # noqa: BLE001 - already logged with its traceback and recorded by run_job
        return
    build_road_network_quietly(job_id, storage, settings)


def check_queued_budget(storage: Storage, settings: Settings, identity: Identity) -> None:
    """:class:`PredictionBudgetSpent` (429) while ``identity``'s unfinished predictions hold its role's budget.

    Checked before the upload is stored, so one more request may go over by at most its own pixels.
    """
    budget = settings.queued_predict_pixels[identity.role.name]
    jobs = prediction_store(storage)

    def unfinished(job_id: str) -> bool:
        try:
            return jobs.get(job_id).status in (Status.QUEUED, Status.RUNNING)
        except NotFound:
            return False

    queued = limits.queued_pixels(settings.redis_url, identity.name, unfinished)
    if queued >= budget:
        raise PredictionBudgetSpent(
            f"{identity.name} has {queued} pixels of predictions queued (the {identity.role.name} budget is "
            f"{budget}); submit again when one of them is done"
        )


@router.post("", status_code=201, response_model=Prediction, responses={202: {"model": Prediction}})
def create_prediction(
    response: Response,
    tasks: BackgroundTasks,
    identity: CallerDep,
    storage: StorageDep,
    predictor: PredictorDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="PNG, JPEG, TIFF/GeoTIFF or JPEG 2000 image")],
    tta: Annotated[
        TTA | None, Form(description="Test-time augmentation: none (fast) or flip; default: the card's")
    ] = None,
    pixel_size_m: Annotated[str | None, Form(description=PIXEL_SIZE_HELP, examples=["0.5", "auto"])] = None,
) -> Prediction:
    """Upload an image. 201 with the finished prediction, or 202 when it was queued (poll its ``self`` link)."""
    upload, name = file.file, file.filename or "upload"
    pixel = parse_pixel_size(pixel_size_m)
    record, response.status_code = submit(
        storage, predictor, settings, upload, name, tasks, identity, tta, pixel_size_m=pixel
    )
    return public(record)


class ScenePrediction(BaseModel):
    """An ingested scene to predict where it is (no upload)."""

    scene_id: str = Field(description="Id of a scene of the ingest service (same storage), e.g. a mosaic of tiles.")
    tta: TTA | None = Field(default=None, description="Test-time augmentation: none or flip; default: the card's.")


@router.post("/scenes", status_code=202, response_model=Prediction, dependencies=[require(Role.operator)])
def create_scene_prediction(body: ScenePrediction, storage: StorageDep, predictor: PredictorDep) -> Prediction:
    """Predict a whole ingested scene (a city-sized image, or a mosaic of tiles) on the ``predict`` workers.

    202: the job is queued; large scenes are cut into shards that every worker shares. Outputs:
    ``probability.tif`` and ``mask.tif`` (Cloud-Optimized GeoTIFFs with overviews) and ``roads.geojson``.
    """
    from roadseg.gateway.tasks import predict

    predictor.signature(body.tta)  # an unavailable test-time augmentation is refused before anything is stored
    record = create_scene_job(storage, body.scene_id, body.tta)
    folder = prediction_store(storage).key(record.id)
    enqueue(lambda: predict.delay(record.id), "prediction", lambda _: storage.delete_prefix(folder), "predict")
    return public(record)


@router.post("/example", status_code=201, response_model=Prediction, responses={202: {"model": Prediction}})
def create_example_prediction(
    response: Response,
    tasks: BackgroundTasks,
    storage: StorageDep,
    predictor: PredictorDep,
    settings: SettingsDep,
    identity: CallerDep,
) -> Prediction:
    """Predict the built-in synthetic example image (drawn by code: no upload needed)."""
    example = io.BytesIO(example_png())
    record, response.status_code = submit(storage, predictor, settings, example, "example.png", tasks, identity)
    return public(record)


@router.get("/{job_id}", response_model=Prediction)
def get_prediction(job_id: str, jobs: PredictionsDep) -> Prediction:
    """Status, progress, image facts and links to the outputs of one prediction."""
    return public(jobs.get(job_id))


@router.get("/{job_id}/files/{name}", response_class=StreamingResponse)
def get_file(
    job_id: str, name: str, jobs: PredictionsDep, storage: StorageDep, settings: SettingsDep
) -> StreamingResponse:
    """Download one output file of a prediction.

    One of: mask.png (0/255), overlay.png (RGBA roads), image.png, probability.png/.tif, mask.tif, roads.geojson
    (built now if it is not yet), and missing.geojson for a prediction made by a missing-roads job.
    """
    record = jobs.get(job_id)
    if name not in MEDIA_TYPES or name not in public(record).links:
        raise NotFound(f"prediction {job_id} has no file {name!r}")
    key = road_network(job_id, storage, settings)[0] if name == "roads.geojson" else jobs.key(job_id, name)
    size = storage.size(key)
    return StreamingResponse(
        _chunks(storage.open(key)),
        media_type=MEDIA_TYPES[name],
        headers={"Content-Length": str(size), "Content-Disposition": f'inline; filename="{job_id}-{name}"'},
    )


@router.post("/{job_id}/route", response_model=Route)
def route(job_id: str, body: RouteRequest, storage: StorageDep, settings: SettingsDep) -> dict[str, Any]:
    """Shortest path along the predicted roads between two points; length in metres when georeferenced.

    The first route of a prediction may wait for its road network to be built.
    """
    key, record = road_network(job_id, storage, settings)
    return route_between(storage, key, record.info, body.start, body.end, body.crs)


def _chunks(fh: BinaryIO, size: int = 1024 * 1024) -> Iterator[bytes]:
    """Stream a storage object in 1 MiB chunks and close it at the end."""
    with fh:
        while chunk := fh.read(size):
            yield chunk
