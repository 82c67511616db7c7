"""Celery task of the gateway: predict one stored upload that was too large to do in the request."""

from __future__ import annotations

from roadseg.celery_app import app
from roadseg.config import get_settings
from roadseg.errors import RoadsegError
from roadseg.gateway.predictions import build_road_network_quietly, run_job
from roadseg.storage import get_storage


@app.task(name="roadseg.gateway.predict")
def predict(job_id: str) -> dict:
    """Run prediction job ``job_id`` (queue ``predict``); progress and outputs go to its status record.

    Bad input is recorded in the job (status ``failed``) and not retried; the task returns the
    final record either way, so a re-delivery after a worker crash just redoes the job. Once the job
    is done (and visible as such), the same worker builds its road network.
    """
    from roadseg.gateway.predictor import get_predictor

    storage, settings = get_storage(), get_settings()
    try:
        record = run_job(job_id, storage, get_predictor(), settings)
    except RoadsegError as exc:
        return {"id": job_id, "status": "failed", "error": str(exc)}
    build_road_network_quietly(job_id, storage, settings)
    return {"id": job_id, "status": record["status"]}
