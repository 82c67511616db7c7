"""Browser sessions after ``/login``: a random id in an HttpOnly, SameSite=Strict cookie, kept in Redis.

The session in Redis names the API key by its hash and expires; the browser never holds the key
itself. Logging out deletes the session; revoking the key ends every session signed in with it.
Redis holds the sessions so that every replica knows them and logging out on one ends them on all.
"""

from __future__ import annotations

import hashlib
import logging
import secrets

import redis

from roadseg import limits
from roadseg.auth.identity import Identity
from roadseg.auth.keys import keyring
from roadseg.config import Settings
from roadseg.errors import SessionsUnavailable, Unauthenticated

log = logging.getLogger(__name__)

#: Cookie holding a browser's session id after /login (HttpOnly: page scripts never see it).
SESSION_COOKIE = "roadseg_session"
#: How long a browser stays signed in.
SESSION_SECONDS = 8 * 3600


def _session_key(session_id: str) -> str:
    """Redis key of a session: the id's hash, so the store's contents cannot be replayed as cookies."""
    return "roadseg:session:" + hashlib.sha256(session_id.encode()).hexdigest()


def create_session(settings: Settings, key_digest: str) -> str:
    """A new random session id for the key with this SHA-256, kept in Redis for :data:`SESSION_SECONDS`."""
    session_id = secrets.token_urlsafe(32)
    try:
        limits.redis_client(settings.redis_url).set(_session_key(session_id), key_digest, ex=SESSION_SECONDS)
    except redis.RedisError as exc:
        log.error("cannot store a sign-in session: %s", exc)
        raise SessionsUnavailable("signing in is not possible right now; try again in a minute") from exc
    return session_id


def session_identity(settings: Settings, session_id: str) -> Identity:
    """The identity of a browser session; 401 once it expired, was ended, or its key was revoked."""
    try:
        client = limits.redis_client(settings.redis_url)
        digest = client.get(_session_key(session_id))
    except redis.RedisError as exc:
        log.error("cannot check a sign-in session: %s", exc)
        raise SessionsUnavailable("sign-in sessions cannot be checked right now; try again in a minute") from exc
    if digest is None:
        raise Unauthenticated("your sign-in ended or expired: sign in again at /login")
    try:
        text = digest.decode() if isinstance(digest, bytes) else str(digest)
        return keyring(settings).identify_digest(text, via="session")
    except Unauthenticated:
        end_session(settings, session_id)  # its key was revoked or removed: the session ends with it
        raise


def end_session(settings: Settings, session_id: str) -> None:
    """Delete a session (logout); a broker that cannot be reached is logged (the cookie is dropped anyway)."""
    try:
        limits.redis_client(settings.redis_url).delete(_session_key(session_id))
    except redis.RedisError as exc:
        log.error("cannot end a sign-in session: %s", exc)
