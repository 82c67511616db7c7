"""Where the repository, the shared data, the committed test data and the test artifacts are."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("ROADSEG_SHARED_DIR", REPO.parent / "shared"))
#: Small synthetic stand-ins of ../shared/data, same names and formats (tests/data/make_fixtures.py writes them).
DATA = REPO / "tests" / "data"
ARTIFACTS = REPO / "test-artifacts"
