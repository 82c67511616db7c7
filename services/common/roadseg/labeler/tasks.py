"""Celery tasks of the labeler service (queue ``label``): a run is planned, then labeled shard by shard.

``label_scene`` only receives a run id: everything else (scene, vector keys, options) is in the
run record written by :func:`roadseg.labeler.run.prepare_run`, so a re-delivered or re-submitted
task redoes exactly the same work and skips the tiles already finished.
"""

from __future__ import annotations

import logging

from celery import group

from roadseg.celery_app import app
from roadseg.errors import RoadsegError

log = logging.getLogger(__name__)


@app.task(name="roadseg.labeler.label_scene", acks_late=True, reject_on_worker_lost=True)
def label_scene(run_id: str) -> dict:
    """Plan run ``run_id`` and queue one :func:`label_shard` per unfinished shard (a Celery group).

    Bad input fails the run (recorded, no retry).
    """
    from roadseg.config import get_settings
    from roadseg.labeler.run import finish_label_run, plan_label_run
    from roadseg.storage import get_storage

    storage = get_storage()
    try:
        pending = plan_label_run(storage, run_id, get_settings().shard_tiles)
        if not pending:  # a re-delivered plan after every shard finished
            return {"run_id": run_id, "status": "done", "counts": finish_label_run(storage, run_id)["counts"]}
    except RoadsegError as exc:
        # The record already says failed with the message; a retry would fail the same way.
        log.warning("label run %s failed: %s", run_id, exc)
        return {"run_id": run_id, "status": "failed", "error": str(exc)}
    group(label_shard.s(run_id, index) for index in pending).apply_async()
    return {"run_id": run_id, "shards": len(pending)}


@app.task(name="roadseg.labeler.label_shard", acks_late=True, reject_on_worker_lost=True)
def label_shard(run_id: str, index: int) -> dict:
    """Label the tiles of one shard; the shard that completes the set writes the run's manifest."""
    from roadseg.labeler.run import finish_label_run
    from roadseg.labeler.run import label_shard as run_shard
    from roadseg.storage import get_storage

    storage = get_storage()
    try:
        if not run_shard(storage, run_id, index):
            return {"run_id": run_id, "shard": index}
        manifest = finish_label_run(storage, run_id)
    except RoadsegError as exc:
        log.warning("label run %s failed: %s", run_id, exc)
        return {"run_id": run_id, "status": "failed", "error": str(exc)}
    return {"run_id": run_id, "status": "done", "counts": manifest["counts"]}
