"""Celery tasks of the labeler service (placeholder)."""

from roadseg.celery_app import app  # noqa: F401
