"""``/api/v1/label-runs``: start label runs on the Celery workers and follow them.

The review pages are where people look at masks; this router is how programs (the end-to-end
pipeline, ``roadseg demo``) start the same work without a shell on the worker.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from roadseg.auth import Role, require
from roadseg.documents import LabelRunRecord
from roadseg.errors import InvalidInput
from roadseg.http_api import StorageDep, enqueue
from roadseg.jobs import DONE, FAILED
from roadseg.storage import safe_filename, safe_key, split_url

router = APIRouter(prefix="/api/v1/label-runs", tags=["label runs"], dependencies=[require(Role.operator)])


def _options(options_json: str):
    from roadseg.labeler.run import LabelOptions

    try:
        data = json.loads(options_json or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"options is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput("options must be a JSON object (fields of LabelOptions)")
    try:
        return LabelOptions.from_dict(data)
    except TypeError as exc:
        raise InvalidInput(f"unknown label option: {exc}") from exc


@router.post("", status_code=202, response_model=LabelRunRecord)
def start_label_run(
    storage: StorageDep,
    scene_id: Annotated[str, Form(description="scene id from the ingest service")],
    vectors: Annotated[UploadFile | None, File(description="road vectors: GeoJSON, GeoPackage, OSM PBF")] = None,
    vectors_uri: Annotated[str | None, Form(description="or a file:// / gs:// URL of the vectors")] = None,
    options: Annotated[
        str, Form(description='JSON label options, e.g. {"widths": {"width_attr": "lane_number"}}')
    ] = "{}",
) -> dict[str, Any]:
    """Validate the vectors, create (or reuse) the run and queue it on the ``label`` workers.

    A run that is not done yet is queued again when submitted again (a failed one retries).
    """
    from roadseg.labeler.run import prepare_run, run_store
    from roadseg.labeler.tasks import label_scene

    if (vectors is None) == (vectors_uri is None):
        raise InvalidInput("send exactly one of: a `vectors` file upload or a `vectors_uri`")
    label_options = _options(options)
    with tempfile.TemporaryDirectory(prefix="roadseg-vectors-") as tmp:
        if vectors is not None:
            local = Path(tmp) / safe_filename(vectors.filename or "roads.geojson", "roads.geojson")
            with open(local, "wb") as out:
                while chunk := vectors.file.read(1024 * 1024):
                    out.write(chunk)
            if local.stat().st_size == 0:
                raise InvalidInput("the vectors upload is empty")
        else:
            source, name = split_url(str(vectors_uri))
            local = source.download(name, Path(tmp) / safe_filename(name))
        record = prepare_run(storage, safe_key(scene_id), local, label_options)
    if record["status"] != DONE:
        run_id = record["id"]
        enqueue(
            lambda: label_scene.delay(run_id),
            "label run",
            lambda message: run_store(storage).update(run_id, status=FAILED, error=message),
            "label",
        )
    return record


@router.get("/{run_id}", response_model=LabelRunRecord)
def get_label_run(run_id: str, storage: StorageDep) -> dict[str, Any]:
    """Status and progress of a label run."""
    from roadseg.labeler.run import run_store

    return run_store(storage).get(run_id)
