"""Missing-roads jobs in storage: the job record, candidates page by page, and the reviewers' decisions.

Layout (``missing/<id>/``): ``status.json`` (:class:`MissingRecord`), ``existing.geojson`` (the map's
roads over the image, scene coordinates), ``missing.geojson`` and ``unsupported.geojson`` (every
candidate, for GIS tools), ``candidates/<kind>-<page>.json`` (:class:`CandidatePage`, rank order) and
``review/<candidate>.<decision>.json`` (one :class:`Decision` each, so two reviewers never overwrite each other's
candidates, and a listing counts them) plus
``review/bulk.json`` (:class:`BulkReject`).

Candidate ids carry their rank (``m000123`` is the 124th best missing road), so the page holding a
candidate is found without an index, and the review page reads one page at a time however many
thousands a city has.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field

from roadseg.documents import Document, ImageInfo, JobRecord
from roadseg.errors import InvalidInput, NotFound
from roadseg.jobs import JobStore
from roadseg.storage import Storage, safe_key

KIND = "missing"
CandidateKind = Literal["missing", "unsupported"]
MISSING: CandidateKind = "missing"
UNSUPPORTED: CandidateKind = "unsupported"
CANDIDATE_KINDS = (MISSING, UNSUPPORTED)
#: What a reviewer may record; ``clear`` forgets a decision. ``skip`` = seen, left for later.
DECISIONS = ("accept", "reject", "skip")


class Candidate(BaseModel):
    """One candidate: a missing road (predicted, not mapped) or an unsupported one (mapped, not predicted)."""

    id: str = Field(description="<m|u><rank>: rank 0 is the best score of its kind.")
    kind: CandidateKind
    rank: int
    score: float = Field(description="Rank score in [0, 1] (roadseg.missing.compare.missing_score).")
    length_m: float
    mean_probability: float = Field(description="The model's mean road probability along the line.")
    connected: bool = Field(description="Whether it joins the existing network (dangling candidates rank lower).")
    coordinates: list[list[float]] = Field(description="The line in the scene's CRS (pixels for a plain image).")
    coordinates_wgs84: list[list[float]] | None = Field(description="The line in EPSG:4326; None for a plain image.")


class CandidatePage(Document):
    """``candidates/<kind>-<page>.json``: a page of candidates in rank order."""

    kind: CandidateKind
    page: int
    candidates: list[Candidate]


class Decision(Document):
    """``review/<candidate>.json``: what a reviewer decided and who."""

    candidate_id: str
    decision: Literal["accept", "reject", "skip"]
    reviewer: str
    time: float
    score: float


class BulkReject(Document):
    """``review/bulk.json``: every candidate under ``below`` that nobody accepted counts as rejected."""

    below: float
    reviewer: str
    time: float


class MissingRecord(JobRecord):
    """A missing-roads job: which image and vectors, how strict, and how many candidates it found."""

    stage: str = Field(description="queued, predicting, comparing, done or failed.")
    scene_id: str | None = Field(default=None, description="The ingested scene compared, when it is one.")
    prediction_id: str | None = Field(default=None, description="The gateway prediction it compares (API jobs).")
    image_url: str | None = Field(default=None, description="The image file a command-line job compared.")
    input_name: str
    vectors_name: str
    info: ImageInfo
    pixel_size_m: float
    tolerance_m: float
    min_length_m: float
    threshold: float | None = None
    page_size: int
    model: dict[str, Any] | None = Field(default=None, description="Backend, name and version that predicted.")
    existing: dict[str, Any] = Field(default_factory=dict, description="Features read, lines kept, parts dropped.")
    counts: dict[str, int] | None = Field(default=None, description="Candidates per kind, once done.")
    lengths_m: dict[str, float] | None = Field(default=None, description="Predicted and existing network lengths.")


class Progress(BaseModel):
    """How far the review of a job's missing-road candidates got."""

    total: int
    accepted: int
    rejected: int
    skipped: int
    bulk_rejected: int
    undecided: int
    bulk_below: float | None


class MissingJobs(JobStore[MissingRecord]):
    """The records of missing-roads jobs; an unknown id is "no missing-roads job" (not the folder's name)."""

    def get(self, job_id: str) -> MissingRecord:
        """The job's record; :class:`NotFound` naming the id when there is none."""
        try:
            return super().get(job_id)
        except NotFound as exc:
            raise NotFound(f"no missing-roads job with id {job_id!r}") from exc


def missing_store(storage: Storage) -> MissingJobs:
    """The records of missing-roads jobs, ``missing/<id>/status.json``."""
    return MissingJobs(storage, KIND, MissingRecord)


def page_key(job_id: str, kind: str, page: int) -> str:
    """Storage key of one page of candidates."""
    return safe_key(KIND, job_id, "candidates", f"{kind}-{page:05d}.json")


def review_key(job_id: str, candidate_id: str, decision: str) -> str:
    """Storage key of a candidate's decision: the decision is in the name, so a listing alone counts them."""
    return safe_key(KIND, job_id, "review", f"{candidate_id}.{decision}.json")


def bulk_key(job_id: str) -> str:
    """Storage key of the job's bulk rejection."""
    return safe_key(KIND, job_id, "review", "bulk.json")


def page_count(record: MissingRecord, kind: str) -> int:
    """Pages of ``kind`` candidates a done job has."""
    total = (record.counts or {}).get(kind, 0)
    return -(-total // record.page_size)


def write_pages(storage: Storage, job_id: str, kind: str, candidates: list[Candidate], page_size: int) -> int:
    """Store ``candidates`` (rank order) as pages of ``page_size``; returns how many pages."""
    pages = 0
    for pages, start in enumerate(range(0, len(candidates), page_size), 1):
        page = CandidatePage(kind=kind, page=pages - 1, candidates=candidates[start : start + page_size])  # type: ignore[arg-type]
        storage.write_text(page_key(job_id, kind, pages - 1), json.dumps(page.dump()))
    return pages


def read_page(storage: Storage, record: MissingRecord, kind: str, page: int) -> list[Candidate]:
    """One page of a done job's candidates ([] past the last page)."""
    if kind not in CANDIDATE_KINDS:
        raise InvalidInput(f"candidate kind must be missing or unsupported, got {kind!r}")
    if page < 0 or page >= page_count(record, kind):
        return []
    key = page_key(record.id, kind, page)
    return CandidatePage.parse(storage.read_text(key), key).candidates


def all_candidates(storage: Storage, record: MissingRecord, kind: str = MISSING) -> Iterator[Candidate]:
    """Every candidate of ``kind``, page by page (one page in memory at a time)."""
    for page in range(page_count(record, kind)):
        yield from read_page(storage, record, kind, page)


def get_candidate(storage: Storage, record: MissingRecord, candidate_id: str) -> Candidate:
    """The candidate with this id; :class:`NotFound` for an id the job does not have."""
    kind = {"m": MISSING, "u": UNSUPPORTED}.get(candidate_id[:1])
    rank = candidate_id[1:]
    if kind is None or not rank.isdigit():
        raise NotFound(f"job {record.id} has no candidate {candidate_id!r}")
    page = read_page(storage, record, kind, int(rank) // record.page_size)
    for candidate in page:
        if candidate.id == candidate_id:
            return candidate
    raise NotFound(f"job {record.id} has no candidate {candidate_id!r}")


def set_decision(storage: Storage, job_id: str, candidate: Candidate, decision: str, reviewer: str) -> Decision | None:
    """Record ``accept``/``reject``/``skip`` for a candidate (``clear`` forgets it); returns the decision.

    The new decision is written before the candidate's other decisions are removed, so a crash in
    between leaves two, and :func:`decision_kinds` then keeps the last one listed; the next decision
    on that candidate settles it.
    """
    if decision != "clear" and decision not in DECISIONS:
        raise InvalidInput(f"decision must be accept, reject, skip or clear, got {decision!r}")
    made = None
    if decision != "clear":
        made = Decision(
            candidate_id=candidate.id,
            decision=decision,  # type: ignore[arg-type]
            reviewer=reviewer,
            time=time.time(),
            score=candidate.score,
        )
        storage.write_text(review_key(job_id, candidate.id, decision), json.dumps(made.dump()))
    for other in DECISIONS:
        if other != decision:
            storage.delete(review_key(job_id, candidate.id, other))
    return made


def decision_kinds(storage: Storage, job_id: str) -> dict[str, str]:
    """Candidate id -> accept / reject / skip, from one listing of the review folder (no object is read).

    Why names and not contents: a city's review holds thousands of decisions, and the progress line is
    recomputed on every key press.
    """
    found = {}
    for key in storage.list(safe_key(KIND, job_id, "review")):
        candidate_id, _, rest = key.rsplit("/", 1)[1].partition(".")
        decision = rest.removesuffix(".json")
        if decision in DECISIONS:
            found[candidate_id] = decision
    return found


def decisions(storage: Storage, job_id: str) -> dict[str, Decision]:
    """Every explicit decision of a job with who made it and when, by candidate id (reads each one)."""
    found = {}
    for candidate_id, decision in decision_kinds(storage, job_id).items():
        key = review_key(job_id, candidate_id, decision)
        found[candidate_id] = Decision.parse(storage.read_text(key), key)
    return found


def bulk_reject(storage: Storage, job_id: str, below: float, reviewer: str) -> BulkReject:
    """Reject every candidate scoring under ``below`` that nobody accepted (one record, not one per candidate)."""
    if not 0.0 <= below <= 1.0:
        raise InvalidInput(f"the bulk-reject score must be between 0 and 1, got {below}")
    rule = BulkReject(below=below, reviewer=reviewer, time=time.time())
    storage.write_text(bulk_key(job_id), json.dumps(rule.dump()))
    return rule


def bulk_rule(storage: Storage, job_id: str) -> BulkReject | None:
    """The job's bulk rejection, if any."""
    key = bulk_key(job_id)
    return BulkReject.parse(storage.read_text(key), key) if storage.exists(key) else None


def effective(candidate: Candidate, decision: str | None, rule: BulkReject | None) -> str | None:
    """``accept``/``reject`` as exported: an explicit accept or reject wins, then the bulk rule; else None."""
    if decision in ("accept", "reject"):
        return decision
    if rule is not None and candidate.score < rule.below:
        return "reject"
    return None


def review_progress(storage: Storage, record: MissingRecord) -> Progress:
    """Counts of the missing-road review, from the decisions and the scores (no candidate page is read)."""
    total = (record.counts or {}).get(MISSING, 0)
    found = {k: v for k, v in decision_kinds(storage, record.id).items() if k.startswith("m")}
    rule = bulk_rule(storage, record.id)
    scores = read_scores(storage, record.id)
    below = {i for i, score in enumerate(scores) if rule is not None and score < rule.below}
    explicit = {int(k[1:]): d for k, d in found.items()}
    bulk = {i for i in below if explicit.get(i) not in ("accept", "reject")}
    accepted = sum(1 for d in explicit.values() if d == "accept")
    rejected = sum(1 for d in explicit.values() if d == "reject")
    skipped = sum(1 for i, d in explicit.items() if d == "skip" and i not in bulk)
    return Progress(
        total=total,
        accepted=accepted,
        rejected=rejected,
        skipped=skipped,
        bulk_rejected=len(bulk),
        undecided=total - accepted - rejected - skipped - len(bulk),
        bulk_below=rule.below if rule else None,
    )


def scores_key(job_id: str) -> str:
    """Storage key of the missing candidates' scores in rank order (progress counts without reading pages)."""
    return safe_key(KIND, job_id, "scores.json")


def read_scores(storage: Storage, job_id: str) -> list[float]:
    """The missing candidates' scores in rank order ([] before the job is done)."""
    key = scores_key(job_id)
    return json.loads(storage.read_text(key)) if storage.exists(key) else []
