"""Celery tasks of the labeler service (queue ``label``).

``label_scene`` only receives a run id: everything else (scene, vector keys, options) is in the
run record written by :func:`roadseg.labeler.run.prepare_run`, so a re-delivered or re-submitted
task redoes exactly the same work and skips the tiles already finished.
"""

from __future__ import annotations

import logging

from roadseg.celery_app import app
from roadseg.errors import RoadsegError

log = logging.getLogger(__name__)


@app.task(name="roadseg.labeler.label_scene", acks_late=True, reject_on_worker_lost=True)
def label_scene(run_id: str) -> dict:
    """Label every tile of run ``run_id``; returns the counts. Bad input fails the run (no retry)."""
    from roadseg.labeler.run import label_run
    from roadseg.storage import get_storage

    try:
        manifest = label_run(get_storage(), run_id)
    except RoadsegError as exc:
        # The record already says failed with the message; a retry would fail the same way.
        log.warning("label run %s failed: %s", run_id, exc)
        return {"run_id": run_id, "status": "failed", "error": str(exc)}
    return {"run_id": run_id, "status": "done", "counts": manifest["counts"]}
