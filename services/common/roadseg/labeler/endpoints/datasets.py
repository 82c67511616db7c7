"""``/api/v1/datasets``: export finished, reviewed label runs as a training dataset."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from roadseg.auth import Role, require
from roadseg.documents import DatasetManifest
from roadseg.http_api import StorageDep
from roadseg.storage import safe_filename, safe_key

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"], dependencies=[require(Role.operator)])


class DatasetRequest(BaseModel):
    """Which finished label runs to export, and how to split them."""

    runs: list[str] = Field(min_length=1, description="label run ids")
    name: str = Field(description="dataset name: written to <storage>/datasets/<name>/")
    block_tiles: int = Field(default=4, ge=1, description="spatial block edge in tiles")
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="seed of the split (numpy's range: 0 to 2^32-1)")
    include_flagged: bool = False


class DatasetExport(DatasetManifest):
    """The written dataset's manifest, plus where it is."""

    url: str = Field(description="Folder of the shards and manifest.json (give it to roadseg train).")
    storage: str = Field(description="The storage it was written to.")


@router.post("", status_code=201, response_model=DatasetExport)
def export_dataset(spec: DatasetRequest, storage: StorageDep) -> dict[str, Any]:
    """Export finished runs as TFRecord shards under ``datasets/<name>/`` (review decisions respected)."""
    from roadseg.labeler.dataset_export import samples_from_runs, write_dataset

    samples, excluded = samples_from_runs(
        storage, spec.runs, spec.block_tiles, spec.fractions, spec.seed, spec.include_flagged
    )
    out = storage.url_for(safe_key("datasets", safe_filename(spec.name)))
    manifest = write_dataset(samples, out, info={"runs": spec.runs, "excluded": excluded})
    return {"url": out, "storage": storage.url, **manifest}
