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
from typing import Any, Generic, TypeVar, overload

from roadseg.documents import SCHEMA_VERSION, JobRecord, Status
from roadseg.errors import NotFound
from roadseg.storage import Storage, safe_key

#: The record model of a store's kind of job.
R = TypeVar("R", bound=JobRecord)


def new_id() -> str:
    """A short, URL-safe, sortable-enough job id."""
    return time.strftime("%Y%m%d") + "-" + uuid.uuid4().hex[:12]


class JobStore(Generic[R]):
    """Status records of one kind of job (``scenes``, ``labels``, ``predictions``), read and written as ``R``."""

    @overload
    def __init__(self: JobStore[JobRecord], storage: Storage, kind: str) -> None: ...
    @overload
    def __init__(self, storage: Storage, kind: str, model: type[R]) -> None: ...
    def __init__(self, storage: Storage, kind: str, model: type[Any] = JobRecord) -> None:
        """Keep the records of ``kind`` jobs in ``storage``, one ``<kind>/<id>/status.json`` per job, as ``model``."""
        self.storage = storage
        self.kind = kind
        self.model: type[R] = model

    def _write(self, job_id: str, fields: dict[str, Any]) -> R:
        """Check ``fields`` against the model, stamp the current layout version and store the record atomically."""
        record = self.model.model_validate({**fields, "schema_version": SCHEMA_VERSION})
        self.storage.write_text(self.key(job_id, "status.json"), json.dumps(record.dump(), indent=2))
        return record

    def _read(self, key: str) -> R:
        return self.model.parse(self.storage.read_text(key), key)

    def key(self, job_id: str, *parts: str) -> str:
        """Storage key inside a job's folder; refuses ids with path tricks."""
        return safe_key(self.kind, job_id, *parts)

    def create(self, job_id: str, **fields: object) -> R:
        """Write a new ``queued`` record with ``fields`` (replacing any earlier one) and return it."""
        now = time.time()
        return self._write(
            job_id, {"id": job_id, "status": Status.QUEUED, "created": now, "updated": now, "error": None, **fields}
        )

    def get(self, job_id: str) -> R:
        """The job's record; raises :class:`NotFound` naming the kind of job when there is none."""
        try:
            return self._read(self.key(job_id, "status.json"))
        except NotFound as exc:
            raise NotFound(f"no {self.kind[:-1] if self.kind.endswith('s') else self.kind} with id {job_id!r}") from exc

    def update(self, job_id: str, **fields: object) -> R:
        """Merge ``fields`` into the record and stamp ``updated``; safe because a job has one writer at a time."""
        record = self.get(job_id)
        return self._write(job_id, {**record.model_dump(), **fields, "updated": time.time()})

    def list(self) -> list[R]:
        """All records of this kind, newest first."""
        records = []
        for key in self.storage.list(self.kind):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == "status.json":
                records.append(self._read(key))
        return sorted(records, key=lambda r: r.created, reverse=True)
