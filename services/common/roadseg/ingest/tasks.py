"""Celery tasks of the ingest service: tile one registered scene (queue ``ingest``), shard by shard.

Safe to run twice or after a kill: tiles are keyed by grid position and written atomically,
a re-run skips the ones already stored, and a finished shard is not redone
(:mod:`roadseg.shards`). Transient errors (network, storage I/O) are
retried with exponential backoff; bad input is recorded in the scene's status and not retried.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import Task, group

from roadseg.celery_app import app
from roadseg.documents import Status
from roadseg.errors import RoadsegError
from roadseg.storage import get_storage

if TYPE_CHECKING:
    from billiard.einfo import ExceptionInfo

log = logging.getLogger(__name__)


class SceneTask(Task):
    """Records retries and final failures in the scene's status record."""

    def on_retry(
        self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], einfo: ExceptionInfo
    ) -> None:
        """Show the scene as queued again, with the transient error, while Celery waits to retry it."""
        _record(args[0], status=Status.QUEUED, error=f"retrying after a transient error: {type(exc).__name__}: {exc}")

    def on_failure(
        self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], einfo: ExceptionInfo
    ) -> None:
        """Record the scene as failed once Celery gives up (retries exhausted or an error not retried)."""
        _record(args[0], status=Status.FAILED, error=f"tiling failed: {type(exc).__name__}: {exc}")


def _record(scene_id: str, **fields: object) -> None:
    from roadseg.ingest.scene_jobs import scene_store

    try:
        scene_store(get_storage()).update(scene_id, **fields)
    except Exception:  # the status store itself may be what is failing
        log.exception("could not update the status of scene %s", scene_id)


RETRIES = {
    "acks_late": True,
    "autoretry_for": (ConnectionError, OSError, TimeoutError),
    "dont_autoretry_for": (RoadsegError,),
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 5,
}


@app.task(base=SceneTask, name="roadseg.ingest.tile_scene", bind=True, **RETRIES)
def tile_scene(self: SceneTask, scene_id: str) -> dict:
    """Plan scene ``scene_id`` and queue one :func:`tile_shard` per unfinished shard (a Celery group).

    The workers of the ``ingest`` queue then share the scene; the last shard to finish writes the manifest.
    """
    from roadseg.config import get_settings
    from roadseg.ingest.scene_jobs import finish_scene, plan_scene

    storage = get_storage()
    try:
        pending = plan_scene(storage, scene_id, get_settings().shard_tiles)
    except RoadsegError as exc:  # already recorded as failed by plan_scene; retrying cannot help
        log.warning("scene %s rejected: %s", scene_id, exc)
        return {"scene_id": scene_id, "status": Status.FAILED, "error": str(exc)}
    if not pending:  # a re-delivered plan after every shard finished
        finish_scene(storage, scene_id)
        return {"scene_id": scene_id, "shards": 0}
    group(tile_shard.s(scene_id, index) for index in pending).apply_async()
    return {"scene_id": scene_id, "shards": len(pending)}


@app.task(base=SceneTask, name="roadseg.ingest.tile_shard", bind=True, **RETRIES)
def tile_shard(self: SceneTask, scene_id: str, index: int) -> dict:
    """Cut the tiles of one shard of a planned scene; the shard that completes the set writes the manifest."""
    from roadseg.ingest.scene_jobs import finish_scene, run_shard

    storage = get_storage()
    try:
        if not run_shard(storage, scene_id, index):
            return {"scene_id": scene_id, "shard": index}
        manifest = finish_scene(storage, scene_id)
    except RoadsegError as exc:  # recorded as failed by run_shard; retrying cannot help
        log.warning("scene %s rejected: %s", scene_id, exc)
        return {"scene_id": scene_id, "status": Status.FAILED, "error": str(exc)}
    return {"scene_id": scene_id, "tiles": len(manifest["tiles"]), "skipped_empty": manifest["skipped_empty"]}
