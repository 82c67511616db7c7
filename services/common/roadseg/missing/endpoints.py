"""Missing-roads routes of the labeler: ``/api/v1/missing`` (jobs, candidates, decisions, exports) and the review pages.

Viewers see jobs, candidates and exports; labelers and up decide (accept, reject, skip, bulk reject);
operators and up start jobs, as they start label runs. A decision records who made it: the
authenticated identity, or in open local mode the form's reviewer name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roadseg.auth import CallerDep, Role, require
from roadseg.documents import Status
from roadseg.errors import InvalidInput, NotFound
from roadseg.http_api import SettingsDep, StorageDep
from roadseg.missing.records import (
    CANDIDATE_KINDS,
    MISSING,
    Candidate,
    Decision,
    MissingRecord,
    Progress,
    bulk_reject,
    bulk_rule,
    decision_kinds,
    effective,
    get_candidate,
    missing_store,
    page_count,
    read_page,
    review_progress,
    set_decision,
)
from roadseg.storage import Storage

if TYPE_CHECKING:
    from roadseg.missing.chips import ExistingIndex

#: Own templates first, then the labeler's (``base.html``: scripts, styles and the security policy's rules).
templates = Jinja2Templates(
    directory=[
        str(Path(__file__).resolve().parent / "templates"),
        str(Path(__file__).resolve().parents[1] / "labeler" / "templates"),
    ]
)

api = APIRouter(prefix="/api/v1/missing", tags=["missing roads"], dependencies=[require(Role.viewer)])
pages = APIRouter(prefix="/missing", include_in_schema=False, dependencies=[require(Role.viewer)])

#: Export files: name -> media type.
EXPORTS = {
    "accepted.geojson": "application/geo+json",
    "accepted.osc": "application/xml",
    "rejected.geojson": "application/geo+json",
    "missing.geojson": "application/geo+json",
    "unsupported.geojson": "application/geo+json",
}


class JobStatus(BaseModel):
    """A job's record and, once done, how far its review got."""

    job: MissingRecord
    progress: Progress | None


class CandidateList(BaseModel):
    """One page of candidates with their decisions."""

    job_id: str
    kind: str
    page: int
    pages: int
    candidates: list[Candidate]
    decisions: dict[str, str] = Field(description="candidate id -> accept / reject / skip (explicit ones only)")


class DecisionRequest(BaseModel):
    """A reviewer's decision."""

    decision: str = Field(description="accept, reject, skip or clear")


class BulkRequest(BaseModel):
    """Reject every candidate under a score that nobody accepted."""

    below: float = Field(ge=0.0, le=1.0)


class JobOptions(BaseModel):
    """What a job may choose (the ``options`` form field, JSON); unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    tolerance_m: float | None = Field(
        default=None, gt=0, description="default: ROADSEG_MISSING_TOLERANCE_M or band + 6 px"
    )
    min_length_m: float | None = Field(default=None, gt=0, description="default: ROADSEG_MISSING_MIN_LENGTH_M")
    layer: str | None = Field(default=None, description="layer of a multi-layer vector file")
    assume_crs: str | None = Field(default=None, description="CRS of a vector file that declares none")
    pixel_size_m: float | None = Field(default=None, gt=0, description="pixel size of a plain image (required there)")
    tta: Literal["none", "flip"] | None = Field(default=None, description="test-time augmentation of the prediction")


def _options(text: str) -> dict[str, Any]:
    try:
        return JobOptions.model_validate_json(text or "{}").model_dump()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"options: {problems}") from exc


def _done(storage: Storage, job_id: str) -> MissingRecord:
    record = missing_store(storage).get(job_id)
    if record.status != Status.DONE:
        raise InvalidInput(f"missing-roads job {job_id} is {record.status} ({record.stage}), not done")
    return record


# ---------------------------------------------------------------------------------------------- API


@api.post("", status_code=202, response_model=MissingRecord, dependencies=[require(Role.operator)])
def start_job(
    storage: StorageDep,
    settings: SettingsDep,
    scene_id: Annotated[str | None, Form(description="an ingested scene (or send `image`)")] = None,
    image: Annotated[UploadFile | None, File(description="or an image: GeoTIFF, JPEG 2000, PNG, JPEG")] = None,
    vectors: Annotated[
        UploadFile | None, File(description="road vectors: GeoJSON, GeoPackage, zipped Shapefile (.zip), OSM .osm.pbf")
    ] = None,
    vectors_uri: Annotated[str | None, Form(description="or a file:// / gs:// URI under the allow-lists")] = None,
    options: Annotated[
        str, Form(description="JSON: tolerance_m, min_length_m, layer, assume_crs, pixel_size_m (plain images), tta")
    ] = "{}",
) -> MissingRecord:
    """Check the image and vectors, then queue the prediction (predict workers) and the comparison (label workers)."""
    from roadseg.missing.jobs import stored_vectors, submit

    chosen = _options(options)
    name = vectors.filename if vectors is not None else (vectors_uri or "")
    with stored_vectors(
        vectors.file if vectors is not None else None, vectors_uri, name or "roads.geojson", settings
    ) as local:
        return submit(
            storage,
            settings,
            local,
            chosen,
            scene_id=scene_id,
            image=image.file if image is not None else None,
            image_name=(image.filename or "image.tif") if image is not None else "image.tif",
        )


@api.get("", response_model=list[MissingRecord])
def list_jobs(storage: StorageDep) -> list[MissingRecord]:
    """Every missing-roads job, newest first."""
    return missing_store(storage).list()


@api.get("/{job_id}", response_model=JobStatus)
def get_job(job_id: str, storage: StorageDep) -> JobStatus:
    """A job's record (status, stage, counts) and its review progress once done."""
    record = missing_store(storage).get(job_id)
    progress = review_progress(storage, record) if record.status == Status.DONE else None
    return JobStatus(job=record, progress=progress)


@api.get("/{job_id}/candidates", response_model=CandidateList)
def list_candidates(
    job_id: str,
    storage: StorageDep,
    kind: Annotated[str, Query(description="missing or unsupported")] = MISSING,
    page: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """One page of candidates, best first, with the decisions made on them."""
    record = _done(storage, job_id)
    candidates = read_page(storage, record, kind, page)
    return {
        "job_id": job_id,
        "kind": kind,
        "page": page,
        "pages": page_count(record, kind) if kind in CANDIDATE_KINDS else 0,
        "candidates": candidates,
        "decisions": _page_decisions(storage, job_id, candidates),
    }


@api.post(
    "/{job_id}/candidates/{candidate_id}/decision", response_model=Decision | None, dependencies=[require(Role.labeler)]
)
def decide_json(
    job_id: str, candidate_id: str, body: DecisionRequest, storage: StorageDep, identity: CallerDep
) -> Decision | None:
    """Record accept / reject / skip (or clear) for one candidate, with who decided."""
    candidate = get_candidate(storage, _done(storage, job_id), candidate_id)
    return set_decision(storage, job_id, candidate, body.decision, identity.reviewer())


@api.post("/{job_id}/bulk-reject", response_model=Progress, dependencies=[require(Role.labeler)])
def bulk_reject_json(job_id: str, body: BulkRequest, storage: StorageDep, identity: CallerDep) -> Progress:
    """Reject every missing candidate under ``below`` that nobody accepted; returns the progress after it."""
    record = _done(storage, job_id)
    bulk_reject(storage, job_id, body.below, identity.reviewer())
    return review_progress(storage, record)


@api.get("/{job_id}/export/{name}", response_class=Response)
def export(job_id: str, name: str, storage: StorageDep) -> Response:
    """``accepted.geojson``, ``accepted.osc`` (JOSM), ``rejected.geojson``, or every candidate of a kind."""
    from roadseg.missing.export import candidates_geojson, decided, osm_change

    if name not in EXPORTS:
        raise NotFound(f"no export {name!r}; choose one of {', '.join(EXPORTS)}")
    record = _done(storage, job_id)
    if name in ("missing.geojson", "unsupported.geojson"):
        body = storage.read_bytes(missing_store(storage).key(job_id, name))
    elif name == "accepted.osc":
        body = osm_change(decided(storage, record, "accept"), record)
    else:
        which = "accept" if name.startswith("accepted") else "reject"
        body = json.dumps(candidates_geojson(decided(storage, record, which), record, tags=True)).encode()
    disposition = f'attachment; filename="{job_id}.{name}"'
    return Response(body, media_type=EXPORTS[name], headers={"Content-Disposition": disposition})


def _page_decisions(storage: Storage, job_id: str, candidates: list[Candidate]) -> dict[str, str]:
    """Explicit decisions of the candidates of one page (one listing of the review, no object read)."""
    made = decision_kinds(storage, job_id)
    return {c.id: made[c.id] for c in candidates if c.id in made}


# -------------------------------------------------------------------------------------------- pages


_INDEXES: dict[tuple[str, str], ExistingIndex] = {}


def _existing_index(storage: Storage, job_id: str) -> ExistingIndex:
    from roadseg.missing.chips import ExistingIndex
    from roadseg.missing.run import existing_lines

    key = (storage.url, job_id)
    if key not in _INDEXES:
        if len(_INDEXES) >= 16:
            _INDEXES.clear()
        _INDEXES[key] = ExistingIndex(existing_lines(storage, job_id))
    return _INDEXES[key]


@pages.get("", response_class=HTMLResponse)
def jobs_page(request: Request, storage: StorageDep) -> HTMLResponse:
    """Every missing-roads job with links to its review."""
    return templates.TemplateResponse(request, "missing_jobs.html", {"jobs": missing_store(storage).list()})


@pages.get("/{job_id}", response_class=HTMLResponse)
def review_page(
    request: Request, job_id: str, storage: StorageDep, identity: CallerDep, page: Annotated[int, Query(ge=0)] = 0
) -> HTMLResponse:
    """One page of missing-road candidates, best first, with chips, keys and the review's progress."""
    record = missing_store(storage).get(job_id)
    context: dict[str, Any] = {"job": record, "can_decide": identity.role >= Role.labeler, "page": page}
    if record.status == Status.DONE:
        candidates = read_page(storage, record, MISSING, page)
        rule = bulk_rule(storage, job_id)
        explicit = _page_decisions(storage, job_id, candidates)
        context |= {
            "candidates": candidates,
            "decisions": explicit,
            "bulk": rule,
            "bulk_rejected": {
                c.id for c in candidates if effective(c, None, rule) == "reject" and c.id not in explicit
            },
            "pages": page_count(record, MISSING),
            "progress": review_progress(storage, record),
        }
    return templates.TemplateResponse(request, "missing_review.html", context)


@pages.get("/{job_id}/candidates/{candidate_id}/chip.png", response_class=Response)
def chip(job_id: str, candidate_id: str, storage: StorageDep, settings: SettingsDep) -> Response:
    """The imagery around a candidate, existing roads in cyan, the candidate in magenta (unsupported: amber)."""
    from roadseg.missing.chips import chip_png, stretch_of
    from roadseg.missing.jobs import open_image
    from roadseg.missing.run import frame_of

    record = _done(storage, job_id)
    candidate = get_candidate(storage, record, candidate_id)
    with open_image(storage, record, settings) as ds:
        png = chip_png(
            ds,
            stretch_of(job_id, ds, settings.stretch_percentiles),
            frame_of(record),
            candidate,
            _existing_index(storage, job_id),
        )
    return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


@pages.post(
    "/{job_id}/candidates/{candidate_id}/decision", response_class=HTMLResponse, dependencies=[require(Role.labeler)]
)
def decide(
    request: Request,
    job_id: str,
    candidate_id: str,
    storage: StorageDep,
    identity: CallerDep,
    decision: Annotated[str, Form(description="accept, reject, skip or clear")],
    reviewer: Annotated[str | None, Form(description="name to record in open local mode (no login)")] = None,
) -> HTMLResponse:
    """Record a decision; returns the candidate's card (htmx swaps it in) and the updated progress line."""
    record = _done(storage, job_id)
    candidate = get_candidate(storage, record, candidate_id)
    made = set_decision(storage, job_id, candidate, decision, identity.reviewer(reviewer))
    rule = bulk_rule(storage, job_id)
    context = {
        "job": record,
        "c": candidate,
        "decision": made.decision if made else None,
        "bulk_rejected": made is None and effective(candidate, None, rule) == "reject",
        "can_decide": True,
        "progress": review_progress(storage, record),
        "oob": True,  # the progress line is swapped in beside the card (htmx out-of-band)
    }
    return templates.TemplateResponse(request, "_candidate.html", context)


@pages.post("/{job_id}/bulk-reject", response_class=RedirectResponse, dependencies=[require(Role.labeler)])
def bulk_reject_form(
    job_id: str,
    storage: StorageDep,
    identity: CallerDep,
    below: Annotated[float, Form(ge=0.0, le=1.0)],
    reviewer: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    """Reject every candidate under ``below`` that nobody accepted, then show the review again."""
    _done(storage, job_id)
    bulk_reject(storage, job_id, below, identity.reviewer(reviewer))
    return RedirectResponse(f"/missing/{job_id}", status_code=303)
