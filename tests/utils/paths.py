"""Where the repository, the shared data and the test artifacts are."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("ROADSEG_SHARED_DIR", REPO.parent / "shared"))
ARTIFACTS = REPO / "test-artifacts"
