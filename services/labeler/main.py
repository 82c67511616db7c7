"""Label review service (port 8002): ``uvicorn --app-dir services/labeler main:app``."""

from roadseg.label_service import create_app
from roadseg.logs import setup_logging

setup_logging()
app = create_app()
