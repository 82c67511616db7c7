"""Typed, versioned JSON documents: written and read through one model each; old files still read."""

from __future__ import annotations

import json

import pytest
from roadseg.documents import SCHEMA_VERSION, ModelCard, PredictionRecord, Roads, SceneRecord, Status
from roadseg.errors import InvalidInput
from roadseg.jobs import JobStore
from roadseg.storage import LocalStorage
from utils.paths import REPO

#: A scene status record exactly as roadseg wrote it before documents had a schema_version.
LEGACY_SCENE = {
    "id": "s0123",
    "status": "done",
    "created": 1764000000.0,
    "updated": 1764000100.0,
    "error": None,
    "georeferenced": True,
    "crs": "EPSG:32611",
    "transform": [0.3, 0.0, 500000.0, 0.0, -0.3, 4000000.0],
    "width": 1300,
    "height": 1300,
    "bands": 3,
    "dtype": "uint16",
    "bounds": [500000.0, 3999610.0, 500390.0, 4000000.0],
    "pixel_size": [0.3, 0.3],
    "driver": "GTiff",
    "source_key": "scenes/s0123/source.tif",
    "filename": "vegas.tif",
    "bytes": 10148000,
    "tile_size": 512,
    "overlap": 0,
    "percentiles": [2.0, 98.0],
    "progress": {"done": 9, "total": 9},
    "tile_count": 9,
    "skipped_empty": 0,
    "manifest_key": "scenes/s0123/manifest.json",
}


def test_a_record_written_before_schema_versions_reads_and_is_upgraded_on_update(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write_text("scenes/s0123/status.json", json.dumps(LEGACY_SCENE))
    jobs = JobStore(storage, "scenes", SceneRecord)
    record = jobs.get("s0123")
    assert record.schema_version == 1 and record.tile_count == 9
    assert record.progress.model_dump() == {"done": 9, "total": 9}
    updated = jobs.update("s0123", error="note")
    stored = json.loads(storage.read_text("scenes/s0123/status.json"))
    assert updated.schema_version == stored["schema_version"] == SCHEMA_VERSION
    kept = {k: v for k, v in LEGACY_SCENE.items() if k not in ("updated", "error")}
    assert {k: stored[k] for k in kept} == kept  # nothing lost; fields it lacked get their defaults
    assert stored["source_url"] is None


def test_unknown_fields_are_kept_and_a_newer_layout_is_refused_by_name(tmp_path):
    storage = LocalStorage(tmp_path)
    jobs = JobStore(storage, "scenes", SceneRecord)
    storage.write_text("scenes/s1/status.json", json.dumps({**LEGACY_SCENE, "id": "s1", "added_later": [1, 2]}))
    updated = jobs.update("s1", status="failed")
    assert updated.status == Status.FAILED and updated.model_extra == {"added_later": [1, 2]}
    assert json.loads(storage.read_text("scenes/s1/status.json"))["added_later"] == [1, 2]
    storage.write_text("scenes/s2/status.json", json.dumps({**LEGACY_SCENE, "id": "s2", "schema_version": 99}))
    with pytest.raises(InvalidInput, match=r"scenes/s2/status.json is not a valid SceneRecord: .*newer roadseg"):
        jobs.get("s2")
    storage.write_text("scenes/s3/status.json", json.dumps({**LEGACY_SCENE, "id": "s3", "progress": "half"}))
    with pytest.raises(InvalidInput, match="progress"):
        jobs.get("s3")


def test_a_typed_record_is_stored_as_the_same_json_and_an_update_changes_only_what_it_names(tmp_path):
    storage = LocalStorage(tmp_path)
    jobs = JobStore(storage, "scenes", SceneRecord)
    current = {**LEGACY_SCENE, "schema_version": SCHEMA_VERSION, "nested_later": {"a": [1, {"b": None}]}}
    storage.write_text("scenes/s0123/status.json", json.dumps(current, indent=2))
    record = jobs.get("s0123")
    assert isinstance(record, SceneRecord) and record.status is Status.DONE and record.progress.total == 9
    updated = jobs.update("s0123", tile_count=10)
    stored = json.loads(storage.read_text("scenes/s0123/status.json"))
    assert type(stored["status"]) is str and stored["status"] == "done"
    assert storage.read_text("scenes/s0123/status.json") == json.dumps(updated.dump(), indent=2)
    defaults = {"source_url", "mosaic_files", "stretch", "shards"}  # fields the legacy record lacked: their defaults
    assert {k: v for k, v in stored.items() if k not in defaults} == {
        **current,
        "tile_count": 10,
        "updated": stored["updated"],
    }
    assert [r.id for r in jobs.list()] == ["s0123"] and jobs.list()[0] == updated


def test_a_predictions_road_network_state_is_a_roads_member_stored_as_its_string(tmp_path):
    storage = LocalStorage(tmp_path)
    jobs = JobStore(storage, "predictions", PredictionRecord)
    info = {"georeferenced": False, "transform": [1, 0, 0, 0, 1, 0], "width": 4, "height": 4, "bands": 3}
    info["dtype"] = "uint8"
    jobs.create("p1", input_name="a.png", input_bytes=3, info=info, progress=1.0, stage="done", roads=Roads.PENDING)
    assert json.loads(storage.read_text("predictions/p1/status.json"))["roads"] == "pending"
    for state in ("ready", "skipped", "failed"):  # skipped: records from before large masks were built in shards
        stored = json.loads(storage.read_text("predictions/p1/status.json"))
        storage.write_text("predictions/p1/status.json", json.dumps({**stored, "roads": state}))
        record = jobs.get("p1")
        assert record.roads is Roads(state) and record.roads == state
        jobs.update("p1", roads_note="kept")
        assert json.loads(storage.read_text("predictions/p1/status.json"))["roads"] == state
    assert record.dump()["roads"] == "failed" and type(record.dump()["roads"]) is str
    with pytest.raises(InvalidInput, match="roads"):
        PredictionRecord.parse(json.dumps({**stored, "roads": "built"}), "predictions/p1/status.json")


def test_a_record_that_does_not_fit_its_model_is_never_written(tmp_path):
    from pydantic import ValidationError

    jobs = JobStore(LocalStorage(tmp_path), "predictions", PredictionRecord)
    with pytest.raises(ValidationError, match="info"):
        jobs.create("p1", input_name="a.png", input_bytes=3, progress=0.0, stage="queued")
    assert not (tmp_path / "predictions" / "p1").exists()


def test_the_shipped_model_card_reads_through_the_model():
    from roadseg.model_versions import latest_version, read_card

    version = latest_version(REPO / "models" / "roads")
    card = read_card(REPO / "models" / "roads" / str(version))
    assert ModelCard.model_validate(card).version == version
    assert card["name"] == "roads" and 0 < card["threshold"] < 1 and card["tta"] in ("none", "flip", "d4")
