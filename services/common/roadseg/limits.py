"""Bounds on work: how deep a task queue may get, and how many requests one identity may send a minute.

Both live in the broker's Redis, so every replica of a service sees the same counts. Reads use a
client with sub-second timeouts: a broker that is down must not make every request wait (the
rate limit then lets requests through, logged; queueing reports the broker down as before).
"""

from __future__ import annotations

import hashlib
import logging
import time
from functools import lru_cache

import redis

from roadseg.errors import RateLimited

log = logging.getLogger(__name__)

#: Length of a rate-limit window in seconds (fixed windows: simple, and good enough against floods).
WINDOW_S = 60


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0)


def queue_depth(redis_url: str, queue: str) -> int:
    """Tasks waiting on a Celery queue: the Redis list named after it (kombu's layout for the Redis broker)."""
    return int(_client(redis_url).llen(queue))


def check_rate(redis_url: str, who: str, limit: int) -> None:
    """Count one request of ``who`` in this minute's window; :class:`RateLimited` (429) above ``limit``."""
    now = time.time()
    window = int(now // WINDOW_S)
    key = f"roadseg:rate:{hashlib.sha256(who.encode()).hexdigest()[:16]}:{window}"
    try:
        pipeline = _client(redis_url).pipeline()
        pipeline.incr(key)
        pipeline.expire(key, 2 * WINDOW_S)
        count, _ = pipeline.execute()
    except redis.RedisError as exc:
        log.warning("request of %s not rate-limited: the broker is unreachable (%s)", who, exc)
        return
    if count > limit:
        retry = WINDOW_S - int(now % WINDOW_S)
        raise RateLimited(f"{who} sent more than {limit} requests this minute; try again in {retry} s", retry)
