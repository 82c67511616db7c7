"""Ingest service entry point: ``uvicorn --app-dir services/ingest main:app``."""

from roadseg.ingest.api import create_app
from roadseg.logs import setup_logging

setup_logging()
app = create_app()
