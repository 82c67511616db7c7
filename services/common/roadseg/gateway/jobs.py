"""Prediction jobs of the API: an upload or an ingested scene in, its outputs and status record out.

:func:`create_job` and :func:`create_scene_job` store a job under ``predictions/{id}/`` (status in the
``predictions`` JobStore), :func:`submit_prediction` predicts a small upload during the request or queues
it, and :func:`run_job` runs one to the end in this process: :func:`~roadseg.inference.predict.predict_raster`
into local files, then Cloud-Optimized GeoTIFFs (GDAL's COG driver, block by block) and PNGs stored beside
the input. Images too large for one task are cut into shards (:mod:`roadseg.gateway.sharded`); a job's road
network is built after it (:mod:`roadseg.gateway.road_network`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from rasterio.io import DatasetReader

from roadseg import raster
from roadseg.cog import tif_to_cog
from roadseg.config import Settings
from roadseg.documents import MISSING_CANDIDATES_FILE, ImageInfo, PredictionRecord, Roads, Status
from roadseg.errors import InvalidInput, RoadsegError
from roadseg.http_api import enqueue
from roadseg.inference.layers import BASE_LAYERS, LAYERS, PNG_LAYERS, tif_to_png
from roadseg.inference.predict import ModelWindows, RasterPrediction, predict_raster
from roadseg.inference.predictor import Predictor
from roadseg.jobs import JobStore, new_id
from roadseg.pixel_size import PixelSize
from roadseg.storage import Storage, safe_filename

log = logging.getLogger(__name__)

KIND = "predictions"


def prediction_store(storage: Storage) -> JobStore[PredictionRecord]:
    """The status records of predictions, kept at ``predictions/<id>/status.json`` beside the outputs."""
    return JobStore(storage, KIND, PredictionRecord)


#: Seconds between progress writes to a job's record (the page polls every second, so it sees each one).
PROGRESS_INTERVAL_S = 0.5

#: Files of an API prediction (name -> media type), all under ``predictions/{id}/``.
MEDIA_TYPES = {
    "image.png": "image/png",
    "mask.png": "image/png",
    "overlay.png": "image/png",
    "probability.png": "image/png",
    "probability.tif": "image/tiff",
    "mask.tif": "image/tiff",
    "centerline.png": "image/png",
    "centerline_overlay.png": "image/png",
    "centerline_probability.tif": "image/tiff",
    "centerline.tif": "image/tiff",
    "roads.geojson": "application/geo+json",
    MISSING_CANDIDATES_FILE: "application/geo+json",  # added by the missing-roads job that made the prediction
}


def create_job(
    storage: Storage,
    upload: BinaryIO,
    filename: str,
    settings: Settings,
    tta: str | None = None,
    pixel_size_m: PixelSize = None,
) -> PredictionRecord:
    """Store an upload as a new prediction job after checking its header; nothing is kept if it is refused.

    ``timings.upload`` is the time to store and check it (the client's transfer happened before).
    """
    jobs = prediction_store(storage)
    job_id = new_id()
    name = safe_filename(filename)
    key = jobs.key(job_id, "input", name)
    started = time.perf_counter()
    try:
        size = storage.write_stream(key, upload, settings.max_upload_bytes)
        if size == 0:
            raise InvalidInput("the upload is empty (0 bytes)")
        with raster.open_stored(storage, key, settings.max_scene_pixels) as ds:
            info = raster.scene_info(ds)
        upload_seconds = round(time.perf_counter() - started, 3)
        return jobs.create(
            job_id,
            input_name=name,
            input_bytes=size,
            info=info,
            progress=0.0,
            stage="queued",
            tta=tta,
            pixel_size_m=pixel_size_m,
            timings={"upload": upload_seconds},
        )
    except BaseException:
        storage.delete_prefix(jobs.key(job_id))
        raise


def submit_prediction(
    storage: Storage,
    predictor: Predictor,
    settings: Settings,
    upload: BinaryIO,
    filename: str,
    queue: Callable[[str], Any],
    tta: str | None = None,
    background: Callable[[str], Any] | None = None,
    pixel_size_m: PixelSize = None,
) -> tuple[PredictionRecord, int]:
    """Store and check an upload, then predict it now (small: 201) or ``queue`` its id (large: 202).

    With ``background`` (the page), a small upload is handed to it instead of being predicted during
    the request (202): the page then polls the job and its progress bar moves window by window.
    Input that cannot be predicted during the request, or a queue that cannot be reached, leaves no
    job behind: the client got the error and nobody would ever run it.
    """
    predictor.signature(tta)  # an unavailable test-time augmentation is refused before anything is stored
    record = create_job(storage, upload, filename, settings, tta, pixel_size_m)
    job_id = record.id
    if record.info.width * record.info.height <= settings.sync_predict_max_pixels:
        if background is not None:
            background(job_id)
            return record, 202
        try:
            return run_job(job_id, storage, predictor, settings), 201
        except RoadsegError:
            storage.delete_prefix(prediction_store(storage).key(job_id))
            raise
    enqueue(
        lambda: queue(job_id),
        "prediction",
        lambda _: storage.delete_prefix(prediction_store(storage).key(job_id)),
        "predict",
    )
    return record, 202


def window_progress(jobs: JobStore[PredictionRecord], job_id: str) -> Callable[[int, int], None]:
    """``record(done, total)``: windows predicted so far into the job's record (fraction and counts)."""

    def record(done: int, total: int) -> None:
        jobs.update(job_id, progress=round(done / total, 3), windows_done=done, windows_total=total)

    return record


def progress_writer(jobs: JobStore[PredictionRecord], job_id: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback (in windows) writing the job's record at most every 0.5 s."""
    record = window_progress(jobs, job_id)
    last_write = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write >= PROGRESS_INTERVAL_S or done == total:  # bounded status writes
            last_write = now
            record(done, total)

    return progress


@contextlib.contextmanager
def failing_job(jobs: JobStore[PredictionRecord], job_id: str) -> Iterator[None]:
    """Any error inside marks the job failed (bad input with its message), then propagates.

    A job that is already done stays done: the error then comes from a late duplicate of its last
    task (a re-delivered shard that found the bands already joined and removed), not from its outputs.
    """
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, RoadsegError):
            log.exception("prediction %s failed", job_id)
        if jobs.get(job_id).status != Status.DONE:
            error = str(exc) if isinstance(exc, RoadsegError) else f"internal error: {type(exc).__name__}"
            jobs.update(job_id, status=Status.FAILED, stage="failed", error=error)
        raise


@contextlib.contextmanager
def open_input(storage: Storage, record: PredictionRecord, settings: Settings) -> Iterator[DatasetReader]:
    """The job's input image: its stored upload (its header checked again), or the ingested scene it names."""
    if record.scene_id:
        from roadseg.ingest.scene_jobs import open_scene_source, scene_store, source_of

        scene = scene_store(storage).get(record.scene_id)
        source, key, _ = source_of(storage, scene)
        with open_scene_source(source, key, bool(scene.mosaic_files)) as ds:
            yield ds
        return
    key = prediction_store(storage).key(record.id, "input", record.input_name)
    # Probed whole when it was uploaded (create_job), and a stored upload never changes.
    with raster.open_stored(storage, key, settings.max_scene_pixels, probe=False) as ds:
        yield ds


def page_layers(record: PredictionRecord) -> bool:
    """Whether a job makes the page's layers (image, overlay, PNGs): uploads yes, whole scenes no."""
    return not record.scene_id


def create_scene_job(storage: Storage, scene_id: str, tta: str | None = None) -> PredictionRecord:
    """A queued prediction of an ingested scene (read in place: a city-sized image or a mosaic of tiles).

    Its outputs are Cloud-Optimized GeoTIFFs (probability and mask) and the road network; a browser
    could not show PNGs of such an image, so none are made.
    """
    from roadseg.ingest.scene_jobs import scene_store

    scene = scene_store(storage).get(scene_id)
    info = ImageInfo.model_validate(scene.model_dump(include=set(ImageInfo.model_fields)))
    return prediction_store(storage).create(
        new_id(),
        input_name=scene.filename or scene_id,
        input_bytes=scene.bytes or 0,
        info=info,
        progress=0.0,
        stage="queued",
        tta=tta,
        scene_id=scene_id,
        timings={},
    )


def run_job(job_id: str, storage: Storage, predictor: Predictor, settings: Settings) -> PredictionRecord:
    """Run one stored prediction job to the end in this process; returns the final record.

    The job is done once its rasters are stored; its road network is built afterwards
    (:func:`~roadseg.gateway.road_network.build_road_network_quietly` right after, or
    :func:`~roadseg.gateway.road_network.road_network` on first use), so vectorizing, which can take
    as long as the model on real imagery, never delays the answer.
    Queued images too large for one task are cut into shards instead (:mod:`roadseg.gateway.sharded`).

    Idempotent: outputs have fixed keys and are overwritten atomically, so a re-delivered task
    simply redoes the work. A :class:`RoadsegError` (bad input) marks the job failed and is
    re-raised for the caller (the API turns it into a 4xx); other exceptions mark it failed too.
    """
    jobs = prediction_store(storage)
    predictor.refresh()
    jobs.update(job_id, status=Status.RUNNING, progress=0.0, stage="predicting")
    with failing_job(jobs, job_id), tempfile.TemporaryDirectory(prefix="roadseg-predict-") as tmp:
        record = jobs.get(job_id)
        with open_input(storage, record, settings) as ds:
            result = predict_job(ds, record, predictor, settings, Path(tmp), progress_writer(jobs, job_id))
        return store_outputs(job_id, storage, predictor, settings, Path(tmp), result)


def job_windows(ds: DatasetReader, record: PredictionRecord, predictor: Predictor, settings: Settings) -> ModelWindows:
    """How a job's image meets the model (:meth:`ModelWindows.of`), with the job's pixel size.

    A pixel size ``auto`` (the job's, or none and the card's ``plain_pixel_size``) is the model's choice, made
    once per job: the first call asks the model, and the queued job's planner
    (:func:`~roadseg.gateway.sharded.plan_job`) records the choice in ``resampling``, which every later call
    (each shard, the join, the one task of a job that is not cut) then reuses.
    """
    return ModelWindows.of(ds, predictor, settings, record.pixel_size_m, record.resampling)


def predict_job(
    ds: DatasetReader,
    record: PredictionRecord,
    predictor: Predictor,
    settings: Settings,
    out: Path,
    progress: Callable[[int, int], None],
    window_rows: tuple[int, int] | None = None,
    geometry: ModelWindows | None = None,
) -> RasterPrediction:
    """:func:`predict_raster` with a job's own choices (``window_rows``: one shard's).

    The served version's threshold, the job's tta, its windows (``geometry``, else :func:`job_windows`),
    and the page's layers for uploads only: as PNGs written during the prediction, or for a shard as
    GeoTIFF bands that :mod:`~roadseg.gateway.sharded` joins into PNGs at the end.
    """
    threshold = predictor.threshold(settings.threshold)
    page = page_layers(record)
    layers = tuple(LAYERS) if page and window_rows else BASE_LAYERS
    pngs = tuple(PNG_LAYERS) if page and not window_rows else ()
    return predict_raster(
        ds,
        predictor,
        out,
        settings,
        threshold,
        layers,
        progress,
        tta=record.tta,
        window_rows=window_rows,
        pngs=pngs,
        geometry=geometry or job_windows(ds, record, predictor, settings),
    )


def store_outputs(
    job_id: str, storage: Storage, predictor: Predictor, settings: Settings, out: Path, result: RasterPrediction
) -> PredictionRecord:
    """Turn a finished prediction's files (in ``out``) into the job's outputs (COGs, PNGs) and mark the job done."""
    jobs = prediction_store(storage)
    record = jobs.update(job_id, stage="writing outputs")
    started = time.perf_counter()
    files = result.files

    def cog(layer: str, resampling: str, *options: int) -> Callable[[], Path]:
        return partial(tif_to_cog, files[layer], out / f"{layer}.cog.tif", resampling, *options)

    # Rounded probabilities (PROBABILITY_STEPS) with the floating-point predictor: 2.8 MB at level 1, 2.7 MB
    # at level 6 for 1.5x the time, on a 1500 px Massachusetts tile.
    encodings = {
        f"{layer}.tif": cog(layer, "average", 1, 3)
        for layer in ("probability", "centerline_probability")
        if layer in files
    }
    # The page's layers (uploads): PNGs written during the prediction, or made now from joined shard bands.
    pngs = {name: files[name] for name in PNG_LAYERS if name in files}
    joined_bands = "overlay" in files
    if joined_bands:
        for name, layer in PNG_LAYERS.items():
            if layer in files:
                encodings[name] = partial(tif_to_png, files[layer], out / name)
    if result.info.georeferenced or not (pngs or joined_bands):
        encodings |= {f"{layer}.tif": cog(layer, "nearest") for layer in ("mask", "centerline") if layer in files}
    # GDAL and ISA-L encode without the GIL: the files are written side by side, on every core the model just used.
    with ThreadPoolExecutor(max_workers=min(len(encodings), os.cpu_count() or 1)) as pool:
        running = {name: pool.submit(encode) for name, encode in encodings.items()}
        outputs = pngs | {name: future.result() for name, future in running.items()}
    png_seconds, started = time.perf_counter() - started, time.perf_counter()
    for name, path in outputs.items():
        storage.write_file(jobs.key(job_id, name), path)
    store_seconds = time.perf_counter() - started
    return jobs.update(
        job_id,
        status=Status.DONE,
        progress=1.0,
        stage="done",
        files=sorted(outputs),
        info=result.info,
        threshold=result.threshold,
        centerline_threshold=result.centerline_threshold,
        road_fraction=result.road_pixels / (result.info.width * result.info.height),
        windows_total=result.windows,
        seconds=round(result.seconds, 3),
        timings={
            **(record.timings or {}),
            "predict": round(result.seconds, 3),
            "pngs": round(png_seconds, 3),
            "store": round(store_seconds, 3),
        },
        model=predictor.describe(),
        tta=result.tta,
        resampling=result.resampling,
        roads=Roads.PENDING,
        roads_note=None,
    )
