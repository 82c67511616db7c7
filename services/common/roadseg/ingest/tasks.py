"""Celery task of the ingest service: tile one registered scene (queue ``ingest``).

Safe to run twice or after a kill: tiles are keyed by grid position and written atomically,
and a re-run skips the ones already stored. Transient errors (network, storage I/O) are
retried with exponential backoff; bad input is recorded in the scene's status and not retried.
"""

from __future__ import annotations

import logging

from celery import Task

from roadseg.celery_app import app
from roadseg.errors import RoadsegError
from roadseg.jobs import FAILED, QUEUED
from roadseg.storage import get_storage

log = logging.getLogger(__name__)


class SceneTask(Task):
    """Records retries and final failures in the scene's status record."""

    def on_retry(self, exc, task_id, args, kwargs, einfo) -> None:
        """Show the scene as queued again, with the transient error, while Celery waits to retry it."""
        _record(args[0], status=QUEUED, error=f"retrying after a transient error: {type(exc).__name__}: {exc}")

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Record the scene as failed once Celery gives up (retries exhausted or an error not retried)."""
        _record(args[0], status=FAILED, error=f"tiling failed: {type(exc).__name__}: {exc}")


def _record(scene_id: str, **fields) -> None:
    from roadseg.ingest.scenes import scene_store

    try:
        scene_store(get_storage()).update(scene_id, **fields)
    except Exception:  # the status store itself may be what is failing
        log.exception("could not update the status of scene %s", scene_id)


@app.task(
    base=SceneTask,
    name="roadseg.ingest.tile_scene",
    bind=True,
    acks_late=True,
    autoretry_for=(ConnectionError, OSError, TimeoutError),
    dont_autoretry_for=(RoadsegError,),
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=5,
)
def tile_scene(self, scene_id: str) -> dict:
    """Tile scene ``scene_id``; returns a small summary (the manifest itself is in storage)."""
    from roadseg.ingest.scenes import run_scene

    try:
        manifest = run_scene(get_storage(), scene_id)
    except RoadsegError as exc:  # already recorded as failed by run_scene; retrying cannot help
        log.warning("scene %s rejected: %s", scene_id, exc)
        return {"scene_id": scene_id, "status": FAILED, "error": str(exc)}
    return {"scene_id": scene_id, "tiles": len(manifest["tiles"]), "skipped_empty": manifest["skipped_empty"]}
