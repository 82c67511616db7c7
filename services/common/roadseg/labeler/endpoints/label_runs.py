"""``/api/v1/label-runs``: start label runs on the Celery workers, follow them, read their review.

The review pages (:mod:`.review`) are where people look at masks; this router is how programs (the
end-to-end pipeline, ``roadseg demo``, scripts and tests) start the same work without a shell on the
worker and read the decisions made on those pages. Starting a run needs the ``operator`` role;
reading a run and its decisions, ``labeler`` (who reviews it).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, Field

from roadseg import uri_policy
from roadseg.auth import Role, require
from roadseg.documents import LabelRunRecord, Status
from roadseg.errors import InvalidInput
from roadseg.http_api import SettingsDep, StorageDep, enqueue
from roadseg.storage import safe_filename, safe_key

if TYPE_CHECKING:
    from roadseg.labeler.run import LabelOptions

router = APIRouter(prefix="/api/v1/label-runs", tags=["label runs"])


class Decisions(BaseModel):
    """A run's review so far."""

    run_id: str
    decisions: dict[str, str] = Field(description="tile id -> accept / reject (undecided tiles are absent)")
    undecided: int


def _options(options_json: str) -> LabelOptions:
    """Label options from the form; ``where`` (SQL text for GDAL) is the command line's, the API filters as data."""
    from roadseg.labeler.run import LabelOptions

    try:
        data = json.loads(options_json or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"options is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput("options must be a JSON object (fields of LabelOptions)")
    if "where" in data:
        raise InvalidInput(
            'options.where (SQL) is not accepted over HTTP: use "attribute_filter", e.g. {"highway": ["primary"]}'
        )
    _check_filter(data.get("attribute_filter"))
    try:
        return LabelOptions.from_dict(data)
    except TypeError as exc:
        raise InvalidInput(f"unknown label option: {exc}") from exc


def _check_filter(value: object) -> None:
    """``attribute_filter``: attribute name -> list of plain values (strings or numbers), nothing else."""
    if value is None:
        return
    plain = (str, int, float)
    if not (
        isinstance(value, dict)
        and all(isinstance(k, str) and isinstance(v, list) and v for k, v in value.items())
        and all(isinstance(x, plain) and not isinstance(x, bool) for v in value.values() for x in v)
    ):
        raise InvalidInput(
            'attribute_filter must map attribute names to lists of values, e.g. {"highway": ["primary"]}'
        )


@router.post("", status_code=202, response_model=LabelRunRecord, dependencies=[require(Role.operator)])
def start_label_run(
    storage: StorageDep,
    settings: SettingsDep,
    scene_id: Annotated[str, Form(description="scene id from the ingest service")],
    vectors: Annotated[UploadFile | None, File(description="road vectors: GeoJSON, GeoPackage, OSM PBF")] = None,
    vectors_uri: Annotated[
        str | None,
        Form(
            description="or a file:// or gs:// URL of the vectors, under ROADSEG_INGEST_FILE_ROOTS or in a bucket "
            "of ROADSEG_INGEST_GS_BUCKETS"
        ),
    ] = None,
    options: Annotated[
        str, Form(description='JSON label options, e.g. {"widths": {"width_attr": "lane_number"}}')
    ] = "{}",
) -> LabelRunRecord:
    """Validate the vectors, create (or reuse) the run and queue it on the ``label`` workers.

    A run that is not done yet is queued again when submitted again (a failed one retries).
    """
    from roadseg.labeler.run import prepare_run, run_store
    from roadseg.labeler.tasks import label_scene
    from roadseg.labeler.vectors import check_data_format

    if (vectors is None) == (vectors_uri is None):
        raise InvalidInput("send exactly one of: a `vectors` file upload or a `vectors_uri`")
    if "/" in scene_id or "\\" in scene_id:
        raise InvalidInput(f"scene_id {scene_id!r} is not a scene id (the id the ingest service gave)")
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
            source, name, _ = uri_policy.size_of(str(vectors_uri), settings, "vectors_uri")
            local = source.download(name, Path(tmp) / safe_filename(name))
        check_data_format(local)
        record = prepare_run(storage, safe_key(scene_id), local, label_options)
    if record.status != Status.DONE:
        run_id = record.id
        enqueue(
            lambda: label_scene.delay(run_id),
            "label run",
            lambda message: run_store(storage).update(run_id, status=Status.FAILED, error=message),
            "label",
        )
    return record


@router.get("/{run_id}", response_model=LabelRunRecord, dependencies=[require(Role.labeler)])
def get_label_run(run_id: str, storage: StorageDep) -> LabelRunRecord:
    """Status and progress of a label run."""
    from roadseg.labeler.run import run_store

    return run_store(storage).get(run_id)


@router.get("/{run_id}/decisions", response_model=Decisions, dependencies=[require(Role.labeler)])
def get_label_run_decisions(run_id: str, storage: StorageDep) -> dict[str, Any]:
    """All review decisions of a run (made on its review page) and how many tiles are still undecided."""
    from roadseg.labeler.decisions import get_decisions
    from roadseg.labeler.run import read_manifest

    manifest = read_manifest(storage, run_id)
    decided = get_decisions(storage, run_id)
    return {"run_id": run_id, "decisions": decided, "undecided": len(manifest["tiles"]) - len(decided)}
