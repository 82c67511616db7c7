"""Long jobs cut into shards: many Celery tasks share one scene, one job still gives one result.

A job (tiling a scene, a label run, a large prediction) is cut by its planner into a fixed list of
shards. The cut depends only on the job and the ``ROADSEG_SHARD_*`` settings, never on how many
workers run it, so the output is the same with 1 or N workers: one worker runs the same shards in turn.

Each shard ends by writing its result document ``<job>/shards/<n>.json`` (atomically, like every
object). That document is what makes the work safe to repeat:

* re-running a finished shard finds its document and does nothing;
* a shard killed mid-way has none; the broker re-delivers it (late acks) and the shard redoes only
  the part of its work whose outputs are missing;
* the shard that completes the set assembles the job (manifest, stitched outputs, status ``done``).
  It writes its own document *before* listing the others, so whichever shard finishes last sees
  them all; two shards finishing together may both assemble, writing the same bytes.

The last point does what a Celery chord's callback does, but counts in storage instead of in the
result backend: a Redis restart or a killed callback cannot strand a finished job.

While a shard runs it keeps ``<n>.progress.json`` (units done of its total); :meth:`ShardBook.progress`
adds the finished shards' totals to the running shards' counts, so a job's progress moves with every
shard and never counts a unit twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from roadseg.config import get_settings
from roadseg.documents import LabelRunRecord, SceneRecord, Status
from roadseg.errors import NotFound
from roadseg.jobs import JobStore
from roadseg.storage import Storage

#: Seconds between a shard's progress writes (each one is one small object write, and one listing).
PROGRESS_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Span:
    """Shard ``index`` owns the work units ``[start, stop)`` of its job (tiles, window rows)."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        """How many units the shard owns."""
        return self.stop - self.start


def spans(units: int, per_shard: int) -> list[Span]:
    """``units`` cut into consecutive shards of ``per_shard`` (the last one may be smaller); at least one."""
    per_shard = max(1, per_shard)
    starts = range(0, max(units, 1), per_shard)
    return [Span(i, start, min(start + per_shard, units)) for i, start in enumerate(starts)]


class ShardBook:
    """The shard documents of one job, under ``<prefix>/shards/`` in the job's storage."""

    def __init__(self, storage: Storage, prefix: str, count: int) -> None:
        """Track ``count`` shards of the job whose folder is ``prefix`` (``scenes/<id>``, ``labels/<id>``...)."""
        self.storage = storage
        self.prefix = f"{prefix.rstrip('/')}/shards"
        self.count = count

    def result_key(self, index: int) -> str:
        """Key of shard ``index``'s result document; its presence means the shard is done."""
        return f"{self.prefix}/{index:05d}.json"

    def progress_key(self, index: int) -> str:
        """Key of a running shard's progress document."""
        return f"{self.prefix}/{index:05d}.progress.json"

    def _listing(self) -> tuple[set[int], list[str]]:
        """(indexes of the shards whose result document exists, keys of progress documents): one listing."""
        done, running = set(), []
        for key in self.storage.list(self.prefix):
            name = key.rsplit("/", 1)[-1]
            if name.endswith(".progress.json"):
                running.append(key)
            elif name.endswith(".json"):
                done.add(int(name.removesuffix(".json")))
        return done, running

    def finished(self) -> set[int]:
        """Indexes of the shards whose result document exists (one listing)."""
        return self._listing()[0]

    def pending(self) -> list[int]:
        """Indexes of the shards still to run, in order (what a planner queues)."""
        finished = self.finished()
        return [i for i in range(self.count) if i not in finished]

    def settled(self, index: int, job_failed: bool) -> bool | None:
        """``None`` when shard ``index`` has work to do; otherwise whether every shard has finished.

        A finished shard is not redone (a re-delivered task), and no shard runs for a failed job: bad
        input found by one shard stops the others at their start.
        """
        finished = self.finished()
        if index in finished or job_failed:
            return len(finished) >= self.count
        return None

    def result(self, index: int) -> dict[str, Any] | None:
        """Shard ``index``'s result, or ``None`` while it has not finished."""
        try:
            return json.loads(self.storage.read_text(self.result_key(index)))
        except NotFound:
            return None

    def finish(self, index: int, result: dict[str, Any]) -> bool:
        """Store shard ``index``'s result; returns whether every shard of the job has now finished.

        The document also names the process that did the work (``host:pid``), to tell which worker
        ran what when reading a job's shards.
        """
        worker = f"{socket.gethostname()}:{os.getpid()}"
        self.storage.write_text(self.result_key(index), json.dumps({**result, "worker": worker}))
        self.storage.delete(self.progress_key(index))
        return len(self.finished()) >= self.count

    def results(self) -> list[dict[str, Any]]:
        """Every shard's result in shard order; raises :class:`NotFound` naming the first missing shard."""
        out = []
        for index in range(self.count):
            result = self.result(index)
            if result is None:
                raise NotFound(f"shard {index} of {self.prefix} has not finished")
            out.append(result)
        return out

    def report(self, index: int, done: int, total: int) -> None:
        """Record that running shard ``index`` has done ``done`` of its ``total`` units."""
        self.storage.write_text(self.progress_key(index), json.dumps({"done": done, "total": total}))

    def progress(self, sizes: list[int]) -> int:
        """Units done over the whole job: finished shards count in full (``sizes[i]``), running ones as reported."""
        finished, running = self._listing()
        done = sum(sizes[i] for i in finished)
        for key in running:
            if int(key.rsplit("/", 1)[-1].split(".")[0]) not in finished:
                try:
                    done += int(json.loads(self.storage.read_text(key))["done"])
                except (NotFound, ValueError, KeyError):
                    continue  # the shard finished (and removed it) meanwhile, or it is being rewritten
        return min(done, sum(sizes))


def throttled(
    book: ShardBook, index: int, sizes: list[int], publish: Callable[[int, int], None]
) -> Callable[[int, int], None]:
    """A per-unit progress callback for shard ``index``, storing its count now and then.

    Every :data:`PROGRESS_INTERVAL_S` (and at the shard's end) it writes the shard's progress document
    and calls ``publish(units done in the job, units in the job)``.
    """
    last = 0.0

    def on_progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PROGRESS_INTERVAL_S and done < total:
            return
        last = now
        book.report(index, done, total)
        publish(book.progress(sizes), sum(sizes))

    return on_progress


def tile_plan(total: int, shard_tiles: int | None = None) -> dict[str, int]:
    """The ``shards`` field of a tile job's record: ``total`` tiles cut into shards of ``shard_tiles``.

    ``shard_tiles`` defaults to ``ROADSEG_SHARD_TILES``; the planner writes the result once, so a
    re-delivered plan (or a changed setting) keeps the cut the shards were queued with.
    """
    per_shard = shard_tiles or get_settings().shard_tiles
    return {"count": len(spans(total, per_shard)), "per_shard": per_shard}


#: The record of a job counted in tiles: a scene's tiling or a label run.
TR = TypeVar("TR", bound="SceneRecord | LabelRunRecord")


@dataclass
class TileShard(Generic[TR]):
    """Shard ``index`` of a tile job, as :meth:`TileJob.shard` finds it when its task starts."""

    index: int
    record: TR  # the job's record, read at the start of the shard
    cut: list[Span]
    book: ShardBook
    #: ``None`` when the shard has work to do; otherwise whether every shard has finished
    #: (:meth:`ShardBook.settled`: a finished shard is not redone, none runs for a failed job).
    settled: bool | None
    #: The per-unit progress callback for the shard's work (:func:`throttled`).
    progress: Callable[[int, int], None]

    @property
    def span(self) -> Span:
        """The tiles this shard owns."""
        return self.cut[self.index]

    def finish(self, result: dict[str, Any]) -> bool:
        """Store the shard's result; returns whether every shard of the job has now finished."""
        return self.book.finish(self.index, result)


class TileJob(Generic[TR]):
    """The shard skeleton of a job counted in tiles (a scene's tiling, a label run), around its own work.

    Such a job's record holds ``progress.total`` tiles and, once planned, ``shards`` (:func:`tile_plan`);
    its shard documents live under ``<kind>/<id>/shards/``. Its three steps then go:

    * plan: :meth:`start` marks it running; the job computes what its shards share and writes it with
      ``shards`` once; :meth:`pending` gives the shards still to queue;
    * shard ``n``: :meth:`shard` reads the record and says whether there is work
      (:attr:`TileShard.settled`); the work reports to :attr:`TileShard.progress` and ends with
      :meth:`TileShard.finish`, which says whether the set is complete;
    * finish (by the shard completing the set): :meth:`results` in shard order, joined by the job.

    :meth:`failing` records an error of a step as the job's failure. The gateway's sharded predictions
    (rows of windows, not tiles) use :class:`ShardBook` directly.
    """

    def __init__(self, jobs: JobStore[TR], job_id: str) -> None:
        """The job ``job_id`` among the records of ``jobs`` (whose storage holds its shard documents)."""
        self.jobs = jobs
        self.id = job_id

    def start(self, **fields: object) -> TR:
        """Mark the job running with ``fields``, clearing an earlier run's error; returns the record."""
        return self.jobs.update(self.id, status=Status.RUNNING, error=None, **fields)

    @contextlib.contextmanager
    def failing(self, *errors: type[Exception]) -> Iterator[None]:
        """An error of the ``errors`` kinds (any, by default) inside marks the job failed, then propagates."""
        kinds = errors or (Exception,)
        try:
            yield
        except kinds as exc:
            self.jobs.update(self.id, status=Status.FAILED, error=str(exc))
            raise

    def book(self, record: TR) -> tuple[list[Span], ShardBook]:
        """The planned job's cut into shards and their documents."""
        if record.shards is None:
            raise ValueError(f"job {self.id} is not planned into shards")
        cut = spans(record.progress.total, record.shards.per_shard)
        return cut, ShardBook(self.jobs.storage, self.jobs.key(self.id), len(cut))

    def pending(self, record: TR) -> tuple[list[Span], list[int]]:
        """(the cut, the indexes of the shards still to run): what a planner queues."""
        cut, book = self.book(record)
        return cut, book.pending()

    def shard(self, index: int, echo: Callable[[int, int], None] | None = None) -> TileShard[TR]:
        """Shard ``index`` as its task starts; its progress updates the record's ``progress`` and calls ``echo``."""
        record = self.jobs.get(self.id)
        cut, book = self.book(record)

        def publish(done: int, total: int) -> None:
            self.jobs.update(self.id, progress={"done": done, "total": total})
            if echo:
                echo(done, total)

        progress = throttled(book, index, [s.size for s in cut], publish)
        return TileShard(index, record, cut, book, book.settled(index, record.status == Status.FAILED), progress)

    def results(self, record: TR) -> list[dict[str, Any]]:
        """Every shard's result in shard order; raises :class:`NotFound` naming the first missing shard."""
        return self.book(record)[1].results()
