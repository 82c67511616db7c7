"""The CLI, the configuration and a real Celery round trip through a real Redis."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest
from roadseg.config import InvalidSettings, Settings, get_settings


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    """The names of a parser's subcommands, in the order they were added (aliases left out)."""
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [choice.dest for choice in action._choices_actions]


def test_cli_help_lists_every_service():
    """``roadseg --help`` lists exactly the parser's subcommands, one per line, and they cover every service."""
    from roadseg.cli import build_parser

    commands = _subcommands(build_parser())
    assert set(commands) >= {"ingest", "label", "dataset", "train", "evaluate", "export", "predict", "serve"}
    assert set(commands) >= {"graph", "apls", "route", "missing", "demo"}
    out = subprocess.run([sys.executable, "-m", "roadseg.cli", "--help"], capture_output=True, text=True, check=True)
    # The subcommand list: the lines indented by four spaces under "COMMAND", up to "options:".
    listing = out.stdout.split("COMMAND\n", 1)[1].split("\noptions:", 1)[0]
    listed = re.findall(r"^    (\S+)", listing, flags=re.MULTILINE)
    assert listed == commands


def test_building_the_parser_imports_no_tensorflow_or_geopandas():
    """``roadseg --help`` must stay fast, and TensorFlow's bundled SQLite must not load before GDAL's.

    TF imported first left GeoPackages without their R-tree index (``no such module: rtree``); a fresh
    process is needed because this test session may have imported either already.
    """
    code = (
        "import sys; from roadseg.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'geopandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_settings_read_prefixed_environment(monkeypatch):
    monkeypatch.setenv("ROADSEG_TILE_SIZE", "256")
    monkeypatch.setenv("ROADSEG_STORAGE_URL", "gs://bucket/prefix")
    settings = Settings()
    assert settings.tile_size == 256
    assert settings.storage_url == "gs://bucket/prefix"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ROADSEG_PREDICT_WINDOW": "256", "ROADSEG_PREDICT_OVERLAP": "256"}, "ROADSEG_PREDICT_OVERLAP=256 must be"),
        ({"ROADSEG_PREDICT_WINDOW": "500"}, "ROADSEG_PREDICT_WINDOW=500 must be a positive multiple of 16"),
        ({"ROADSEG_TILE_SIZE": "100"}, "ROADSEG_TILE_SIZE=100 must be a positive multiple of 16"),
        ({"ROADSEG_STORAGE_URL": "s3://bucket/x"}, "ROADSEG_STORAGE_URL='s3://bucket/x': use file:///path or gs://"),
        ({"ROADSEG_TFSERVING_URL": "tfs:8500"}, "ROADSEG_TFSERVING_URL='tfs:8500': use http://host:8501"),
        ({"ROADSEG_IGNORE_VALUE": "255"}, "ROADSEG_IGNORE_VALUE=255 must be 1..254"),
        ({"ROADSEG_PREDICT_BATCH": "many"}, "ROADSEG_PREDICT_BATCH: Input should be a valid integer"),
    ],
)
def test_impossible_settings_stop_the_process_at_start_with_the_variable_name(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidSettings, match=re.escape(message)):
            get_settings()
        command = [sys.executable, "-m", "roadseg.cli", "predict", "x.png", "--out", "o"]
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    finally:
        get_settings.cache_clear()
