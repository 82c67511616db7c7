"""Celery tasks of the ingest service (placeholder)."""

from roadseg.celery_app import app  # noqa: F401
