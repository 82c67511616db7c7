"""Missing-roads jobs of the API: submitted to the labeler, predicted by the gateway's workers, compared here.

:func:`submit` checks everything a user can get wrong before queueing anything (image header, vectors
over the image, URI allow-lists, sizes); a refusal leaves nothing stored. :func:`compare_prediction`
is the worker's step once the gateway's prediction is done. :func:`open_image` opens a job's image
wherever it is (an upload, an ingested scene, a command line's file) for the review page's chips and
the correction dataset.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rasterio.io import DatasetReader
from shapely.geometry import LineString, shape

from roadseg.config import Settings
from roadseg.documents import PredictionRecord, Roads, Status
from roadseg.errors import InvalidInput, RoadsegError, TooLarge
from roadseg.gateway.jobs import create_job, create_scene_job, open_input, prediction_store
from roadseg.gateway.road_network import has_road_network, road_network
from roadseg.missing.compare import centreline_layer
from roadseg.missing.records import MissingRecord, missing_store
from roadseg.missing.run import prepare_job, run_comparison
from roadseg.storage import Storage, safe_filename

log = logging.getLogger(__name__)

#: :func:`compare_prediction` outcome while the prediction is still running.
PENDING = "pending"


@contextlib.contextmanager
def stored_vectors(upload: BinaryIO | None, uri: str | None, filename: str, settings: Settings) -> Iterator[Path]:
    """The vectors (an upload or an allowed URI) as a local file, refused above ``ROADSEG_MISSING_MAX_VECTOR_BYTES``."""
    from roadseg import uri_policy

    limit = settings.missing_max_vector_bytes
    if (upload is None) == (uri is None):
        raise InvalidInput("send exactly one of: a `vectors` file upload or a `vectors_uri`")
    with tempfile.TemporaryDirectory(prefix="roadseg-missing-") as tmp:
        if upload is not None:
            local = Path(tmp) / safe_filename(filename, "roads.geojson")
            size = 0
            with open(local, "wb") as out:
                while chunk := upload.read(1024 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"the vectors upload exceeds {limit} bytes (ROADSEG_MISSING_MAX_VECTOR_BYTES)")
                    out.write(chunk)
        else:
            source, name, size = uri_policy.size_of(str(uri), settings, "vectors URI")
            if size > limit:
                raise TooLarge(f"{uri} is {size} bytes, above {limit} (ROADSEG_MISSING_MAX_VECTOR_BYTES)")
            local = source.download(name, Path(tmp) / safe_filename(name, "roads.geojson"))
        yield local


def submit(
    storage: Storage,
    settings: Settings,
    vectors: Path,
    options: dict[str, Any],
    scene_id: str | None = None,
    image: BinaryIO | None = None,
    image_name: str = "image.tif",
) -> MissingRecord:
    """Create the gateway prediction (of the scene, or of the uploaded image) and this job; queue both.

    Returns the job's record (``queued``). The vectors are read over the image before the prediction is
    queued, so bad vectors cost nothing; the prediction made for a refused job is deleted again.
    """
    from roadseg.celery_app import app
    from roadseg.http_api import enqueue
    from roadseg.missing.tasks import compare

    if (scene_id is None) == (image is None):
        raise InvalidInput("send exactly one of: a `scene_id` or an `image` upload")
    predictions = prediction_store(storage)
    if scene_id is not None:
        prediction = create_scene_job(storage, scene_id, options.get("tta"))
    else:
        assert image is not None
        # A plain image's pixel size scales the model's input and the road network to metres.
        prediction = create_job(storage, image, image_name, settings, options.get("tta"), options.get("pixel_size_m"))
    try:
        record = prepare_job(
            storage,
            settings,
            prediction.info,
            vectors,
            input_name=prediction.input_name,
            layer=options.get("layer"),
            assume_crs=options.get("assume_crs"),
            pixel_size_m=options.get("pixel_size_m"),
            tolerance_m=options.get("tolerance_m"),
            min_length_m=options.get("min_length_m"),
            scene_id=scene_id,
            prediction_id=prediction.id,
        )
    except BaseException:
        storage.delete_prefix(predictions.key(prediction.id))
        raise
    jobs = missing_store(storage)

    def undo(message: str) -> None:
        jobs.update(record.id, status=Status.FAILED, stage="failed", error=message)
        storage.delete_prefix(predictions.key(prediction.id))

    enqueue(lambda: app.send_task("roadseg.gateway.predict", (prediction.id,)), "prediction", undo, "predict")
    enqueue(lambda: compare.delay(record.id), "comparison", undo, "label")
    return record


def compare_prediction(storage: Storage, job_id: str, settings: Settings) -> str:
    """The worker's step: wait for the job's prediction, then compare (``done``); ``pending`` while it runs."""
    jobs = missing_store(storage)
    record = jobs.get(job_id)
    if record.status == Status.DONE:
        return Status.DONE  # a re-delivered task
    if record.prediction_id is None:
        raise InvalidInput(f"missing-roads job {job_id} has no prediction to compare")
    prediction = prediction_store(storage).get(record.prediction_id)
    if prediction.status == Status.FAILED:
        jobs.update(job_id, status=Status.FAILED, stage="failed", error=f"the prediction failed: {prediction.error}")
        return Status.FAILED
    if prediction.status != Status.DONE:
        if record.stage != "predicting":
            jobs.update(job_id, stage="predicting")
        return PENDING
    if network_pending(prediction, settings):
        if record.stage != "tracing":
            jobs.update(job_id, stage="tracing")
        return PENDING
    layer = centreline_layer([name.removesuffix(".tif") for name in prediction.files])
    threshold = prediction.centerline_threshold if layer == "centerline_probability" else prediction.threshold
    if threshold is None:
        raise InvalidInput(f"prediction {prediction.id} records no threshold for its {layer}")
    key = prediction_store(storage).key(prediction.id, f"{layer}.tif")
    try:
        predicted = predicted_lines(storage, prediction, settings)
        with storage.open_raster(key) as probabilities:
            run_comparison(storage, job_id, probabilities, settings, threshold, prediction.model, predicted)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, RoadsegError) else f"internal error: {type(exc).__name__}"
        if not isinstance(exc, RoadsegError):
            log.exception("missing-roads job %s failed", job_id)
        jobs.update(job_id, status=Status.FAILED, stage="failed", error=reason)
        raise
    return Status.DONE


def network_pending(prediction: PredictionRecord, settings: Settings) -> bool:
    """Whether the ``predict`` workers are still tracing a large prediction's road network, shard by shard."""
    info = prediction.info
    return (
        "roads.geojson" not in prediction.files
        and has_road_network(prediction)
        and prediction.roads != Roads.FAILED
        and info.width * info.height > settings.graph_max_pixels
    )


def predicted_lines(storage: Storage, prediction: PredictionRecord, settings: Settings) -> list[LineString] | None:
    """The predicted network of a done prediction: its road network's edges (scene coordinates).

    The network the prediction builds anyway (:mod:`roadseg.gateway.road_network`, from the centreline
    band of a two-output model): built here when the mask is small, else traced shard by shard by the
    ``predict`` workers (:func:`roadseg.gateway.sharded.plan_roads`; :func:`network_pending` until then).
    ``None`` for a prediction without one: the comparison then traces the probabilities itself.
    Raises the reason when building it failed.
    """
    if "roads.geojson" not in prediction.files and not has_road_network(prediction):
        return None
    key, _ = road_network(prediction.id, storage, settings)
    data = json.loads(storage.read_text(key))
    return [line for feature in data["features"] if isinstance(line := shape(feature["geometry"]), LineString)]


@contextlib.contextmanager
def open_image(storage: Storage, record: MissingRecord, settings: Settings) -> Iterator[DatasetReader]:
    """The job's image: its prediction's input (upload or scene), the scene itself, or the command line's file."""
    from roadseg import raster

    if record.prediction_id:
        with open_input(storage, prediction_store(storage).get(record.prediction_id), settings) as ds:
            yield ds
    elif record.scene_id:
        from roadseg.ingest.scene_jobs import open_scene_source, scene_store, source_of

        scene = scene_store(storage).get(record.scene_id)
        source, key, _ = source_of(storage, scene)
        with open_scene_source(source, key, bool(scene.mosaic_files)) as ds:
            yield ds
    elif record.image_url:
        with raster.open_checked(record.image_url.removeprefix("file://")) as ds:
            yield ds
    else:
        raise InvalidInput(f"missing-roads job {record.id} names no image")
