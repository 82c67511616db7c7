"""Celery tasks of the gateway service (placeholder)."""

from roadseg.celery_app import app  # noqa: F401
