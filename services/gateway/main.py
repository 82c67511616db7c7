"""Gateway service entry point: ``uvicorn --app-dir services/gateway main:app``."""

from roadseg.gateway.api import create_app
from roadseg.logs import setup_logging

setup_logging()
app = create_app()
