"""Bounds on work: queue depth, requests a minute per identity, pixels of queued predictions per identity.

All live in the broker's Redis, so every replica of a service sees the same counts. Reads use a
client with sub-second timeouts: a broker that is down must not make every request wait (the
rate limit then lets requests through, logged; queueing reports the broker down as before).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from functools import lru_cache

import redis

from roadseg.errors import RateLimited

log = logging.getLogger(__name__)

#: Length of a rate-limit window in seconds (fixed windows: simple, and good enough against floods).
WINDOW_S = 60


@lru_cache(maxsize=4)
def redis_client(url: str) -> redis.Redis:
    """A client of the broker's Redis with sub-second timeouts (shared by the limits and the sign-in sessions)."""
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0)


def queue_depth(redis_url: str, queue: str) -> int:
    """Tasks waiting on a Celery queue: the Redis list named after it (kombu's layout for the Redis broker)."""
    return int(redis_client(redis_url).llen(queue))


def check_rate(redis_url: str, who: str, limit: int) -> None:
    """Count one request of ``who`` in this minute's window; :class:`RateLimited` (429) above ``limit``."""
    now = time.time()
    window = int(now // WINDOW_S)
    key = f"roadseg:rate:{hashlib.sha256(who.encode()).hexdigest()[:16]}:{window}"
    try:
        pipeline = redis_client(redis_url).pipeline()
        pipeline.incr(key)
        pipeline.expire(key, 2 * WINDOW_S)
        count, _ = pipeline.execute()
    except redis.RedisError as exc:
        log.warning("request of %s not rate-limited: the broker is unreachable (%s)", who, exc)
        return
    if count > limit:
        retry = WINDOW_S - int(now % WINDOW_S)
        raise RateLimited(f"{who} sent more than {limit} requests this minute; try again in {retry} s", retry)


#: How long an identity's list of queued predictions is kept after its last submission (a safety net: the
#: list is pruned of finished jobs on every check).
QUEUED_TTL_S = 7 * 24 * 3600


def _queued_key(who: str) -> str:
    return f"roadseg:queued-pixels:{hashlib.sha256(who.encode()).hexdigest()[:16]}"


def queued_pixels(redis_url: str, who: str, still_queued: Callable[[str], bool]) -> int:
    """Pixels of the predictions ``who`` has queued that are not finished yet (``still_queued(job_id)``).

    The count lives in Redis (every gateway replica shares it) as job id -> pixels; finished jobs are
    dropped here, when next asked, so the workers need not know about budgets. A broker that cannot be
    reached counts as nothing queued (logged): the queueing itself then reports the broker down.
    """
    key = _queued_key(who)
    try:
        client = redis_client(redis_url)
        entries = client.hgetall(key)
        total, finished = 0, []
        for job_id, pixels in entries.items():
            if still_queued(job_id.decode() if isinstance(job_id, bytes) else str(job_id)):
                total += int(pixels)
            else:
                finished.append(job_id)
        if finished:
            client.hdel(key, *finished)
    except redis.RedisError as exc:
        log.warning("queued pixels of %s not counted: the broker is unreachable (%s)", who, exc)
        return 0
    return total


def add_queued_pixels(redis_url: str, who: str, job_id: str, pixels: int) -> None:
    """Count a newly queued prediction of ``who`` until it finishes."""
    key = _queued_key(who)
    try:
        pipeline = redis_client(redis_url).pipeline()
        pipeline.hset(key, job_id, pixels)
        pipeline.expire(key, QUEUED_TTL_S)
        pipeline.execute()
    except redis.RedisError as exc:
        log.warning("queued prediction %s of %s not counted: the broker is unreachable (%s)", job_id, who, exc)
