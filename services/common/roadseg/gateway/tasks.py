"""Celery tasks of the gateway (queue ``predict``): predict stored uploads too large to do in the request.

An image with more rows of windows than ``ROADSEG_SHARD_WINDOW_ROWS`` is cut into shards that the
``predict`` workers share (:mod:`roadseg.gateway.sharded`); a smaller one is one task. The road network
of a mask above ``ROADSEG_GRAPH_MAX_PIXELS`` is traced in shards too, one row of graph windows each.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from celery import group
from celery.signals import worker_init, worker_process_init

from roadseg.celery_app import app
from roadseg.config import Settings, get_settings
from roadseg.errors import RoadsegError
from roadseg.gateway import sharded
from roadseg.gateway.jobs import run_job
from roadseg.gateway.road_network import build_road_network_quietly
from roadseg.inference.predictor import get_predictor, warm_up
from roadseg.storage import Storage, get_storage

if TYPE_CHECKING:
    from celery.apps.worker import Worker

log = logging.getLogger(__name__)

#: Set in a worker's main process when ``predict`` is its only queue; its pool processes inherit it.
_predict_only = False


@worker_init.connect
def _note_queues(sender: Worker, **_kwargs: object) -> None:
    """Remember whether this is a predict worker (``-Q predict``), before it forks its pool processes.

    Only such workers (every deployment's: compose, k8s, ``make up``) load TensorFlow at start. A
    worker that also labels must not: once TensorFlow is in a process, GDAL's GeoPackage reads there
    may bind to TensorFlow's bundled SQLite, which lacks the R*Tree module ("no such module: rtree").
    """
    global _predict_only
    _predict_only = set(sender.app.amqp.queues.consume_from) == {"predict"}


@worker_process_init.connect
def _warm_model(**_kwargs: object) -> None:
    """A predict worker's pool process loads the model and calls it once before it takes its first task.

    Without this, the first prediction on each new worker (every scale-up on GKE) waits for
    TensorFlow and the SavedModel to load. A failure is logged; the first job then loads the model.
    """
    if not _predict_only:
        return
    try:
        warm_up(get_predictor(), get_settings().predict_window)
    except Exception:  # the worker must start anyway; the job reports what is wrong
        log.exception("could not warm the model up; the first prediction will load it")


@app.task(name="roadseg.gateway.predict")
def predict(job_id: str) -> dict:
    """Run prediction job ``job_id``, or queue its shards; progress and outputs go to its status record.

    Bad input is recorded in the job (status ``failed``) and not retried; the task returns the
    final record either way, so a re-delivery after a worker crash just redoes the job. Once the job
    is done (and visible as such), the same worker builds its road network.
    """
    storage, settings, predictor = get_storage(), get_settings(), get_predictor()
    try:
        pending = sharded.plan_job(job_id, storage, predictor, settings)
        if pending is None:
            record = run_job(job_id, storage, predictor, settings)
        elif not pending:  # a re-delivered plan after every shard finished
            record = sharded.finish_job(job_id, storage, predictor, settings)
        else:
            group(predict_shard.s(job_id, index) for index in pending).apply_async()
            return {"id": job_id, "shards": len(pending)}
    except RoadsegError as exc:
        return {"id": job_id, "status": "failed", "error": str(exc)}
    _road_network(job_id, storage, settings)
    return {"id": job_id, "status": record.status}


@app.task(name="roadseg.gateway.predict_shard")
def predict_shard(job_id: str, index: int) -> dict:
    """Predict one band of a sharded job; the shard that completes the set writes the job's outputs."""
    storage, settings, predictor = get_storage(), get_settings(), get_predictor()
    try:
        if not sharded.run_shard(job_id, index, storage, predictor, settings):
            return {"id": job_id, "shard": index}
        record = sharded.finish_job(job_id, storage, predictor, settings)
    except RoadsegError as exc:
        return {"id": job_id, "status": "failed", "error": str(exc)}
    _road_network(job_id, storage, settings)
    return {"id": job_id, "status": record.status}


def _road_network(job_id: str, storage: Storage, settings: Settings) -> None:
    """Right after a job is done: build its road network here, or queue its shards when the mask is large."""
    try:
        pending = sharded.plan_roads(job_id, storage, settings)
    except RoadsegError:
        return  # recorded; the next use of the network says why
    if pending is None:
        build_road_network_quietly(job_id, storage, settings)
    elif pending:
        group(road_shard.s(job_id, index) for index in pending).apply_async()


@app.task(name="roadseg.gateway.road_shard")
def road_shard(job_id: str, index: int) -> dict:
    """Trace one row of graph windows of a large mask; the shard that completes the set stores the network."""
    storage, settings = get_storage(), get_settings()
    try:
        if not sharded.run_roads_shard(job_id, index, storage, settings):
            return {"id": job_id, "roads_shard": index}
        record = sharded.finish_roads(job_id, storage, settings)
    except RoadsegError as exc:
        return {"id": job_id, "roads": "failed", "error": str(exc)}
    return {"id": job_id, "roads": record.roads}
