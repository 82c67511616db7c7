"""HTTP API of the labeler: start label runs on the Celery workers and export datasets.

The review page (``review.py``) is where people look at masks; this router is how programs
(the end-to-end pipeline, ``roadseg demo``) start the same work without a shell on the worker.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, Field

from roadseg.errors import InvalidInput
from roadseg.jobs import DONE, JobStore
from roadseg.storage import Storage, safe_filename, safe_key, split_url

router = APIRouter(prefix="/api/v1", tags=["label runs"])


class DatasetRequest(BaseModel):
    """Which finished label runs to export, and how to split them."""

    runs: list[str] = Field(min_length=1, description="label run ids")
    name: str = Field(description="dataset name: written to <storage>/datasets/<name>/")
    block_tiles: int = Field(default=4, ge=1, description="spatial block edge in tiles")
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    include_flagged: bool = False


def _storage(request: Request) -> Storage:
    """The storage of the app this router is mounted in (``review.create_app(storage)``)."""
    return request.app.state.store()


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


@router.post("/label-runs", status_code=202)
def start_label_run(
    request: Request,
    scene_id: Annotated[str, Form(description="scene id from the ingest service")],
    vectors: Annotated[UploadFile | None, File(description="road vectors: GeoJSON, GeoPackage, OSM PBF")] = None,
    vectors_uri: Annotated[str | None, Form(description="or a file:// / gs:// URL of the vectors")] = None,
    options: Annotated[
        str, Form(description='JSON label options, e.g. {"widths": {"width_attr": "lane_number"}}')
    ] = "{}",
) -> dict[str, Any]:
    """Validate the vectors, create (or reuse) the run and queue it on the ``label`` workers."""
    from roadseg.labeler.run import prepare_run
    from roadseg.labeler.tasks import label_scene

    if (vectors is None) == (vectors_uri is None):
        raise InvalidInput("send exactly one of: a `vectors` file upload or a `vectors_uri`")
    label_options = _options(options)
    storage = _storage(request)
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
        label_scene.delay(record["id"])
    return record


@router.get("/label-runs/{run_id}")
def get_label_run(request: Request, run_id: str) -> dict[str, Any]:
    """Status and progress of a label run."""
    from roadseg.labeler.run import KIND

    return JobStore(_storage(request), KIND).get(run_id)


@router.post("/datasets", status_code=201)
def export_dataset(request: Request, spec: DatasetRequest) -> dict[str, Any]:
    """Export finished runs as TFRecord shards under ``datasets/<name>/`` (review decisions respected)."""
    from roadseg.labeler.datasets import samples_from_runs, write_dataset

    storage = _storage(request)
    samples, excluded = samples_from_runs(
        storage, spec.runs, spec.block_tiles, spec.fractions, spec.seed, spec.include_flagged
    )
    out = storage.url_for(safe_key("datasets", safe_filename(spec.name)))
    manifest = write_dataset(samples, out, info={"runs": spec.runs, "excluded": excluded})
    return {"url": out, "storage": storage.url, **manifest}
