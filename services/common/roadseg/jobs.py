"""Durable job records (scenes, labeling runs, predictions) kept as JSON in object storage.

The record lives next to the job's outputs (``<kind>/<id>/status.json``) so it survives a
Redis flush and works the same on local disk and GCS. Each record has one writer at a time
(the API creates it, then the one task that owns the job updates it), so a read-modify-write
with an atomic object write is enough. Records are written and read through their kind's
:class:`~roadseg.documents.JobRecord` model, so a record is typed and versioned wherever it is used.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from roadseg.documents import SCHEMA_VERSION, JobRecord
from roadseg.errors import NotFound
from roadseg.storage import Storage, safe_key

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


def new_id() -> str:
    """A short, URL-safe, sortable-enough job id."""
    return time.strftime("%Y%m%d") + "-" + uuid.uuid4().hex[:12]


class JobStore:
    """Status records of one kind of job (``scenes``, ``labels``, ``predictions``)."""

    def __init__(self, storage: Storage, kind: str, model: type[JobRecord] = JobRecord) -> None:
        """Keep the records of ``kind`` jobs in ``storage``, one ``<kind>/<id>/status.json`` per job, as ``model``."""
        self.storage = storage
        self.kind = kind
        self.model = model

    def _write(self, job_id: str, record: dict[str, Any]) -> dict[str, Any]:
        """Check ``record`` against the model, stamp the current layout version and store it atomically."""
        document = self.model.model_validate({**record, "schema_version": SCHEMA_VERSION}).dump()
        self.storage.write_text(self.key(job_id, "status.json"), json.dumps(document, indent=2))
        return document

    def _read(self, key: str) -> dict[str, Any]:
        return self.model.parse(self.storage.read_text(key), key).dump()

    def key(self, job_id: str, *parts: str) -> str:
        """Storage key inside a job's folder; refuses ids with path tricks."""
        return safe_key(self.kind, job_id, *parts)

    def create(self, job_id: str, **fields: object) -> dict[str, Any]:
        """Write a new ``queued`` record with ``fields`` (replacing any earlier one) and return it."""
        now = time.time()
        return self._write(
            job_id, {"id": job_id, "status": QUEUED, "created": now, "updated": now, "error": None, **fields}
        )

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's record; raises :class:`NotFound` naming the kind of job when there is none."""
        try:
            return self._read(self.key(job_id, "status.json"))
        except NotFound as exc:
            raise NotFound(f"no {self.kind[:-1] if self.kind.endswith('s') else self.kind} with id {job_id!r}") from exc

    def update(self, job_id: str, **fields: object) -> dict[str, Any]:
        """Merge ``fields`` into the record and stamp ``updated``; safe because a job has one writer at a time."""
        record = self.get(job_id)
        record.update(fields, updated=time.time())
        return self._write(job_id, record)

    def list(self) -> list[dict[str, Any]]:
        """All records of this kind, newest first."""
        records = []
        for key in self.storage.list(self.kind):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == "status.json":
                records.append(self._read(key))
        return sorted(records, key=lambda r: r["created"], reverse=True)
