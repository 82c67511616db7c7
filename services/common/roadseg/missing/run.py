"""A missing-roads job from start to end, shared by ``roadseg missing`` and the labeler's API and worker.

:func:`prepare_job` reads the existing roads over the image first, so bad vectors (another CRS is fine;
none over the image, empty, broken, no CRS) are refused with a 400 before anything is stored or queued.
:func:`run_comparison` then needs only the centreline probabilities: computed here by the command, or
by the gateway's prediction job (sharded over the ``predict`` workers) for the API.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from rasterio.io import DatasetReader
from shapely.geometry import LineString, mapping, shape

from roadseg.config import Settings
from roadseg.documents import MISSING_CANDIDATES_FILE, ImageInfo, Status
from roadseg.gateway.jobs import prediction_store
from roadseg.jobs import new_id
from roadseg.missing.compare import (
    CompareOptions,
    Comparison,
    compare,
    default_tolerance_m,
    predicted_network,
)
from roadseg.missing.frame import Frame
from roadseg.missing.records import MISSING, UNSUPPORTED, MissingRecord, missing_store, scores_key, write_pages
from roadseg.missing.vectors import read_existing_roads
from roadseg.storage import Storage

log = logging.getLogger(__name__)


def prepare_job(
    storage: Storage,
    settings: Settings,
    info: ImageInfo,
    vectors: Path,
    *,
    input_name: str,
    layer: str | None = None,
    assume_crs: str | None = None,
    pixel_size_m: float | None = None,
    tolerance_m: float | None = None,
    min_length_m: float | None = None,
    **source: str | None,
) -> MissingRecord:
    """Read the existing roads over the image ``info`` describes and create a queued job; returns its record.

    ``source`` names the image: ``scene_id``, ``prediction_id`` or ``image_url``. Nothing is stored when
    the vectors are refused.
    """
    frame = Frame.of(info, pixel_size_m)
    existing = read_existing_roads(vectors, frame, layer, assume_crs)
    job_id = new_id()
    jobs = missing_store(storage)
    tolerance = tolerance_m if tolerance_m is not None else default_tolerance_m(settings, frame.pixel_size_m)
    try:
        storage.write_text(jobs.key(job_id, "existing.geojson"), json.dumps(lines_geojson(existing.lines, frame)))
        return jobs.create(
            job_id,
            stage="queued",
            input_name=input_name,
            vectors_name=vectors.name,
            info=info,
            pixel_size_m=round(frame.pixel_size_m, 6),
            tolerance_m=tolerance,
            min_length_m=min_length_m if min_length_m is not None else settings.missing_min_length_m,
            page_size=settings.missing_page_size,
            existing={"features_read": existing.read, "lines": len(existing.lines), "dropped": existing.dropped},
            **source,
        )
    except BaseException:
        storage.delete_prefix(jobs.key(job_id))
        raise


def frame_of(record: MissingRecord) -> Frame:
    """The image frame a job was prepared with."""
    return Frame.of(record.info, record.pixel_size_m)


def existing_lines(storage: Storage, job_id: str) -> list[LineString]:
    """The existing roads stored with a job (scene coordinates)."""
    data = json.loads(storage.read_text(missing_store(storage).key(job_id, "existing.geojson")))
    return [shape(feature["geometry"]) for feature in data["features"]]


def run_comparison(
    storage: Storage,
    job_id: str,
    probabilities: DatasetReader,
    settings: Settings,
    threshold: float,
    model: dict[str, Any] | None,
    predicted: list[LineString] | None = None,
) -> MissingRecord:
    """Compare the predicted network with the job's existing roads, store the candidates; marks the job done.

    ``predicted`` is the prediction's road network (scene coordinates), built shard by shard for a whole
    scene; without it the network is traced here from ``probabilities`` (the command's one process).
    """
    jobs = missing_store(storage)
    record = jobs.update(job_id, status=Status.RUNNING, stage="comparing", threshold=threshold, model=model)
    started = time.perf_counter()
    frame = frame_of(record)
    if predicted is None:
        predicted = predicted_network(probabilities, frame, threshold, settings.graph_window)
    options = CompareOptions(record.tolerance_m, record.min_length_m, threshold)
    result = compare(predicted, existing_lines(storage, job_id), probabilities, frame, options)
    store_comparison(storage, job_id, result, record)
    log.info(
        "missing roads %s: %d missing, %d unsupported candidates in %.1f s",
        job_id,
        len(result.missing),
        len(result.unsupported),
        time.perf_counter() - started,
    )
    return jobs.update(
        job_id,
        status=Status.DONE,
        stage="done",
        counts={MISSING: len(result.missing), UNSUPPORTED: len(result.unsupported)},
        lengths_m={"predicted": result.predicted_length_m, "existing": result.existing_length_m},
    )


def store_comparison(storage: Storage, job_id: str, result: Comparison, record: MissingRecord) -> None:
    """Candidate pages, scores and the two GeoJSON files of a finished comparison."""
    from roadseg.missing.export import candidates_geojson

    jobs = missing_store(storage)
    for kind, candidates in ((MISSING, result.missing), (UNSUPPORTED, result.unsupported)):
        write_pages(storage, job_id, kind, candidates, record.page_size)
        collection = candidates_geojson(candidates, record)
        storage.write_text(jobs.key(job_id, f"{kind}.geojson"), json.dumps(collection))
        if kind == MISSING and record.prediction_id and record.info.georeferenced:
            add_to_prediction(storage, record.prediction_id, collection)
    storage.write_text(scores_key(job_id), json.dumps([c.score for c in result.missing]))


def add_to_prediction(storage: Storage, prediction_id: str, collection: dict[str, Any]) -> None:
    """The candidates as one more file of the job's prediction: its STAC item and map page show them."""
    predictions = prediction_store(storage)
    storage.write_text(predictions.key(prediction_id, MISSING_CANDIDATES_FILE), json.dumps(collection))
    files = predictions.get(prediction_id).files
    predictions.update(prediction_id, files=sorted({*files, MISSING_CANDIDATES_FILE}))


def lines_geojson(lines: list[LineString], frame: Frame) -> dict[str, Any]:
    """Lines in scene coordinates as a FeatureCollection that says its CRS (``null``: pixel coordinates)."""
    return {
        "type": "FeatureCollection",
        "roadseg": {"crs": frame.crs, "units": "crs" if frame.georeferenced else "px"},
        "features": [{"type": "Feature", "properties": {}, "geometry": mapping(line)} for line in lines],
    }
