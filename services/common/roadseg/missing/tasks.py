"""Celery task of missing-roads jobs (queue ``label``, beside the label runs: vectors and GDAL, no TensorFlow).

The image is predicted by the gateway's own prediction job on the ``predict`` workers, shard by shard
for a whole scene (:mod:`roadseg.gateway.sharded`). :func:`compare` waits for it by re-queueing itself
(a worker is never held waiting), then traces and compares in one task.
"""

from __future__ import annotations

import logging

from roadseg.celery_app import app
from roadseg.errors import RoadsegError

log = logging.getLogger(__name__)

#: Seconds between looks at a prediction that is not done yet.
POLL_SECONDS = 2.0


@app.task(name="roadseg.missing.compare", acks_late=True, reject_on_worker_lost=True)
def compare(job_id: str) -> dict:
    """Compare job ``job_id`` once its prediction is done; fails the job when the prediction failed."""
    from roadseg.config import get_settings
    from roadseg.missing.jobs import PENDING, compare_prediction
    from roadseg.storage import get_storage

    try:
        outcome = compare_prediction(get_storage(), job_id, get_settings())
    except RoadsegError as exc:
        log.warning("missing-roads job %s failed: %s", job_id, exc)
        return {"id": job_id, "status": "failed", "error": str(exc)}
    if outcome == PENDING:
        compare.apply_async((job_id,), countdown=POLL_SECONDS)
    return {"id": job_id, "status": outcome}
