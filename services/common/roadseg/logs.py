"""One logging setup for every service and CLI.

Plain text for people by default; ``ROADSEG_LOG_JSON=1`` switches to one JSON object per
line so log collectors (Cloud Logging) keep the fields.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO

_CONFIGURED = False


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (pytest's capture swaps it per test)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def setup_logging(level: str | None = None, json_lines: bool | None = None) -> None:
    """Configure the root logger once; later calls only change the level."""
    global _CONFIGURED
    from roadseg.config import get_settings

    settings = get_settings()
    level = (level or settings.log_level).upper()
    json_lines = settings.log_json if json_lines is None else json_lines
    root = logging.getLogger()
    root.setLevel(level)
    if _CONFIGURED:
        return
    handler = _StderrHandler()
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    for noisy in ("urllib3", "google", "botocore", "rasterio", "fiona", "pyogrio", "absl", "PIL"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    _CONFIGURED = True
