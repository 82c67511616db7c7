"""Reviewer decisions (accept / reject) per tile, kept in storage beside the run.

One small object per tile (``labels/{run}/review/{tile}.json``) rather than one shared file, so
two reviewers clicking at the same time never overwrite each other's decisions.
"""

from __future__ import annotations

import json
import time

from roadseg.errors import InvalidInput, NotFound
from roadseg.labeler.run import KIND, review_key
from roadseg.storage import Storage

DECISIONS = ("accept", "reject")


def set_decision(storage: Storage, run_id: str, tile_id: str, decision: str, reviewer: str | None = None) -> dict:
    """Store ``accept``/``reject`` for a tile, or forget it with ``clear``; returns the record."""
    key = review_key(run_id, tile_id)
    if decision == "clear":
        storage.delete(key)
        return {"tile_id": tile_id, "decision": None}
    if decision not in DECISIONS:
        raise InvalidInput(f"decision must be accept, reject or clear, got {decision!r}")
    record = {"tile_id": tile_id, "decision": decision, "reviewer": reviewer, "time": time.time()}
    storage.write_text(key, json.dumps(record))
    return record


def get_decisions(storage: Storage, run_id: str) -> dict[str, str]:
    """Decisions of a run: tile id -> ``accept`` / ``reject`` (undecided tiles are absent)."""
    result = {}
    for key in storage.list(f"{KIND}/{run_id}/review"):
        record = json.loads(storage.read_text(key))
        if record.get("decision") in DECISIONS:
            result[record["tile_id"]] = record["decision"]
    return result


def count_decided(storage: Storage, run_id: str) -> int:
    """How many tiles of a run hold a decision, from one listing (``clear`` deletes a tile's record).

    The review page updates its "N undecided" after every key press, so this reads no record.
    """
    return len(storage.list(f"{KIND}/{run_id}/review"))


def tile_entry(manifest: dict, tile_id: str) -> dict:
    """The manifest entry of one tile; raises :class:`NotFound` for a tile the run does not have."""
    for entry in manifest["tiles"]:
        if entry["id"] == tile_id:
            return entry
    raise NotFound(f"run {manifest['run_id']} has no tile {tile_id!r}")


def review_order(manifest: dict) -> list[dict]:
    """Flagged tiles first (most flags first), then the rest, each group in grid order."""
    return sorted(manifest["tiles"], key=lambda e: (-len(e["flags"]), e["id"]))
