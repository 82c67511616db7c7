"""The shipped model versions are read only: exports go to the runtime folder, which starts with them."""

from __future__ import annotations

import json
import os

from roadseg.config import REPO_ROOT, Settings
from roadseg.model_versions import latest_version, seed_model_dir


def _shipped(root):
    """A shipped folder with versions 1 and 3 (a SavedModel's marker file and a card each)."""
    for version in (1, 3):
        (root / str(version) / "variables").mkdir(parents=True)
        (root / str(version) / "saved_model.pb").write_bytes(b"graph")
        (root / str(version) / "model_card.json").write_text(json.dumps({"version": version}))
    (root / "README.md").write_text("not a version")
    return root


def test_the_runtime_folder_starts_with_the_shipped_versions_and_exports_stay_in_it(tmp_path):
    shipped, runtime = _shipped(tmp_path / "models" / "roads"), tmp_path / "var" / "models" / "roads"
    before = sorted(str(p.relative_to(shipped)) for p in shipped.rglob("*"))
    assert seed_model_dir(runtime, shipped) == [1, 3]
    assert sorted(p.name for p in runtime.iterdir()) == ["1", "3"]
    assert (runtime / "3" / "saved_model.pb").read_bytes() == b"graph"
    assert seed_model_dir(runtime, shipped) == []  # nothing twice
    (runtime / "4").mkdir()
    (runtime / "4" / "saved_model.pb").write_bytes(b"a demo's fine-tune")
    assert latest_version(runtime) == 4 and latest_version(shipped) == 3
    assert sorted(str(p.relative_to(shipped)) for p in shipped.rglob("*")) == before
    assert not [p for p in runtime.iterdir() if p.name.startswith(".seed-")]  # no half-copied version left


def test_a_folder_that_is_the_shipped_one_a_url_or_somebodys_own_is_not_seeded(tmp_path):
    shipped = _shipped(tmp_path / "shipped")
    own = tmp_path / "own"
    (own / "1").mkdir(parents=True)
    (own / "1" / "saved_model.pb").write_bytes(b"mine")
    assert seed_model_dir(own, shipped) == [] and latest_version(own) == 1
    assert seed_model_dir(shipped, shipped) == []
    assert seed_model_dir("gs://bucket/models/roads", shipped) == []
    assert seed_model_dir(tmp_path / "runtime", tmp_path / "absent") == []


def test_by_default_exports_go_under_var_not_into_the_checkouts_models(monkeypatch):
    for name in ("ROADSEG_MODEL_DIR", "ROADSEG_SHIPPED_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert os.path.commonpath([settings.model_dir, REPO_ROOT / "var"]) == str(REPO_ROOT / "var")
    assert settings.shipped_model_dir == str(REPO_ROOT / "models" / "roads")
