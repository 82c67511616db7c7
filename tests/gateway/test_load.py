"""A short load run (bench/load.py: Locust users against a real gateway, worker and Redis on loopback).

The figures belong in the README (a longer run of the same bench); here the run only has to be
clean: no failed request of any kind, and every prediction the users got accepted finished.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from utils.gateway import dark_model
from utils.paths import REPO


@pytest.mark.slow  # a 12 s load run, plus a gateway and a worker to start
def test_users_uploading_predicting_and_routing_get_no_errors_and_lose_nothing(tmp_path):
    report_path = tmp_path / "load.json"
    load = [sys.executable, str(REPO / "bench" / "load.py"), "--users", "3", "--seconds", "12"]
    done = subprocess.run(
        [*load, "--model", str(dark_model()), "--json", str(report_path)],
        env={**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    by_name = {row["Name"]: row for row in report["requests"]}
    assert int(by_name["Aggregated"]["Request Count"]) > 10
    assert int(by_name["POST predictions (sync)"]["Request Count"]) > 0
    assert [row["Name"] for row in report["requests"] if int(row["Failure Count"])] == [], report["failures"]
    assert set(report["predictions"]) == {"done"} and report["predictions"]["done"] > 0
