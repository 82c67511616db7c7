"""The road network of a done prediction job: traced once from its mask, stored as ``roads.geojson``.

A mask up to ``ROADSEG_GRAPH_MAX_PIXELS`` is traced in one process
(:func:`~roadseg.inference.road_graph.road_graph_geojson`), right after the job or on first use; a larger
one by the ``predict`` workers in shards (:func:`roadseg.gateway.sharded.plan_roads`). Either way the
outcome is in the job's record (``roads``: pending, ready, or failed with the reason).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from roadseg import raster
from roadseg.config import Settings
from roadseg.documents import PredictionRecord, Roads, Status
from roadseg.errors import InvalidInput, RoadsegError
from roadseg.gateway.jobs import prediction_store
from roadseg.inference.predict import plain_pixel_size
from roadseg.inference.road_graph import road_graph_geojson
from roadseg.jobs import JobStore
from roadseg.storage import Storage

log = logging.getLogger(__name__)


#: One builder per job at a time in this process (striped, so the set of locks stays bounded).
_ROAD_LOCKS = [threading.Lock() for _ in range(16)]


def has_road_network(record: PredictionRecord) -> bool:
    """Whether a done prediction has, or can build, ``roads.geojson`` (records before ``roads`` list it as a file)."""
    if "roads.geojson" in record.files:
        return True
    return record.status == Status.DONE and record.roads in (Roads.PENDING, Roads.FAILED)


def road_network(job_id: str, storage: Storage, settings: Settings) -> tuple[str, PredictionRecord]:
    """(storage key of a done prediction's ``roads.geojson``, its record), vectorized from the mask on first use.

    Whoever comes first builds it (the worker right after the job, or a route or download asking
    for it) while the others of this process wait for it; processes racing on one job write the same
    object atomically. A failed build is recorded and tried again on the next use.
    """
    jobs = prediction_store(storage)
    key = jobs.key(job_id, "roads.geojson")
    record = jobs.get(job_id)
    if "roads.geojson" in record.files:
        return key, record
    if record.status != Status.DONE:
        raise InvalidInput(f"prediction {job_id} is {record.status}, not done")
    if not has_road_network(record):
        raise InvalidInput(f"prediction {job_id} has no road network ({record.roads_note})")
    info = record.info
    if info.width * info.height > settings.graph_max_pixels:
        raise InvalidInput(
            f"the road network of prediction {job_id} (above {settings.graph_max_pixels} pixels) is built by the "
            f"predict workers in shards: {record.roads_note or 'not ready yet'}"
        )
    with _ROAD_LOCKS[hash(job_id) % len(_ROAD_LOCKS)]:
        record = jobs.get(job_id)  # another thread may have built it meanwhile
        if "roads.geojson" in record.files:
            return key, record
        started = time.perf_counter()
        with failing_roads(jobs, job_id), raster.open_stored(storage, mask_key(jobs, record)) as ds:
            roads = road_graph_geojson(ds, settings.graph_max_pixels, settings.graph_window, graph_pixel_size(record))
        return key, store_road_network(storage, job_id, roads, time.perf_counter() - started)


def graph_pixel_size(record: PredictionRecord) -> float | None:
    """The metres of a plain image's pixel for its road network: the caller's, or what ``auto`` chose."""
    return plain_pixel_size(record.pixel_size_m, record.resampling)


def mask_key(jobs: JobStore[PredictionRecord], record: PredictionRecord) -> str:
    """Storage key of the mask a done prediction's road network is built from (a COG when georeferenced, else PNG).

    The centreline band of a two-output model: a band of one width follows each road's middle, where
    the surface mask's width varies with the road (and its skeleton with every wide junction).
    """
    for name in ("centerline.tif", "centerline.png", "mask.tif"):
        if name in record.files:
            return jobs.key(record.id, name)
    return jobs.key(record.id, "mask.png")


@contextlib.contextmanager
def failing_roads(jobs: JobStore[PredictionRecord], job_id: str) -> Iterator[None]:
    """A failed road network is logged and recorded (``roads: failed`` with the reason), then re-raised."""
    try:
        yield
    except Exception as exc:
        log.exception("road network of prediction %s failed", job_id)
        reason = str(exc) if isinstance(exc, RoadsegError) else f"internal error: {type(exc).__name__}"
        jobs.update(job_id, roads=Roads.FAILED, roads_note=f"the road network failed: {reason}")
        raise


def store_road_network(storage: Storage, job_id: str, roads: dict[str, Any] | None, seconds: float) -> PredictionRecord:
    """Write ``roads.geojson`` and record it as ready (with its build time); returns the record."""
    jobs = prediction_store(storage)
    if roads is None:
        raise InvalidInput("the image is too large for a road graph in one process")
    storage.write_text(jobs.key(job_id, "roads.geojson"), json.dumps(roads))
    record = jobs.get(job_id)
    return jobs.update(
        job_id,
        roads=Roads.READY,
        roads_note=None,
        files=sorted({*record.files, "roads.geojson"}),
        timings={**(record.timings or {}), "roads": round(seconds, 3)},
    )


def build_road_network_quietly(job_id: str, storage: Storage, settings: Settings) -> None:
    """Build a just-finished prediction's road network ahead of its first route; failures stay in the record."""
    try:
        if has_road_network(prediction_store(storage).get(job_id)):
            road_network(job_id, storage, settings)
    except Exception:  # noqa: BLE001 - logged and recorded by road_network; the next use tries again
        pass
