"""The one Celery application shared by all workers.

Each service's tasks go to their own queue (``ingest``, ``label``, ``predict``, ``train``) so
a service's worker process only consumes its own work. Tasks acknowledge late and are
re-queued when a worker dies mid-task; every task is written to be idempotent (outputs are
keyed deterministically and written atomically), so a re-run after a kill is safe.
"""

from __future__ import annotations

from celery import Celery

from roadseg.config import get_settings

TASK_MODULES = [
    "roadseg.ingest.tasks",
    "roadseg.labeler.tasks",
    "roadseg.gateway.tasks",
    "roadseg.missing.tasks",
]


def make_celery() -> Celery:
    """Build the app from the settings: late acks, one prefetched task per worker, one queue per service."""
    settings = get_settings()
    app = Celery("roadseg", broker=settings.redis_url, backend=settings.redis_url, include=TASK_MODULES)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_always_eager=settings.celery_eager,
        task_eager_propagates=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
        # Redis re-delivers unacknowledged tasks after this many seconds; long enough for the
        # biggest task, short enough that a killed worker's task comes back soon.
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout},
        task_routes={
            "roadseg.ingest.*": {"queue": "ingest"},
            "roadseg.labeler.*": {"queue": "label"},
            "roadseg.gateway.*": {"queue": "predict"},
            # Comparing needs vectors and GDAL, no TensorFlow: beside the label runs (see roadseg.missing.tasks).
            "roadseg.missing.*": {"queue": "label"},
        },
        worker_hijack_root_logger=False,
    )
    return app


app = make_celery()
