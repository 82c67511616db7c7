"""Who may do what: identities from API keys, Identity-Aware Proxy or the open local mode; roles per route.

Secure by default (``ROADSEG_AUTH_MODE=required``): a request names who it is with
``Authorization: Bearer <API key>`` (scripts, CI) or arrives through Identity-Aware Proxy, whose
signed ``x-goog-iap-jwt-assertion`` header is verified here (signature against IAP's public keys,
audience, issuer, expiry) — a header anyone could forge is never trusted on its own. Each identity
has one role; roles are ordered, each one may do what the ones below it may:

* ``viewer``: the prediction page, predictions, routes, the model card;
* ``labeler``: + the label review page and its decisions;
* ``operator``: + ingest, label runs, datasets (and so training data);
* ``admin``: + the list of API keys.

A browser without IAP signs in once at ``/login`` with an API key; it gets a server-side session
(a random id in an HttpOnly, SameSite=Strict cookie, :data:`SESSION_COOKIE`; the session in Redis
names the key by its hash and expires), never the key itself. Logging out deletes the session;
revoking the key ends every session signed in with it. Changes made through such a session, IAP or
open local mode must come from the same site (:func:`check_same_origin`): that is the CSRF protection of the htmx pages.

``make up`` selects ``ROADSEG_AUTH_MODE=open-local`` explicitly: no authentication, everyone is
``admin``, and only requests from this machine (loopback) are answered, whatever address the
server was bound to.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
import redis
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field

from roadseg import limits
from roadseg.config import InvalidSettings, Settings, get_settings
from roadseg.errors import Forbidden, SessionsUnavailable, Unauthenticated

log = logging.getLogger(__name__)

#: Header Identity-Aware Proxy adds to every request it lets through, and how it signs it.
IAP_HEADER = "x-goog-iap-jwt-assertion"
IAP_ISSUER = "https://cloud.google.com/iap"
IAP_KEYS_URL = "https://www.gstatic.com/iap/verify/public_key-jwk"
#: Seconds IAP's fetched public keys are reused (Google rotates them rarely; an unknown key id refetches, at
#: most once per ``ROADSEG_IAP_KEYS_REFETCH_SECONDS``).
IAP_KEYS_TTL_S = 3600
#: Prefix of keys made by ``roadseg keys create`` (recognisable in logs and secret scanners).
KEY_PREFIX = "rsk_"


class Role(IntEnum):
    """Roles in increasing power; a route needing ``labeler`` admits ``operator`` and ``admin`` too."""

    viewer = 1
    labeler = 2
    operator = 3
    admin = 4


#: How an identity was established (``session``: an API key kept in the browser's cookie after /login).
Via = Literal["api-key", "session", "iap", "open-local"]
#: A role by name, as the API shows it.
RoleName = Literal["viewer", "labeler", "operator", "admin"]


@dataclass(frozen=True)
class Identity:
    """Who made a request: an API key's name, an IAP e-mail, or ``local`` in open local mode."""

    name: str
    role: Role
    via: Via

    def reviewer(self, form_name: str | None = None) -> str:
        """Who a review decision is recorded under.

        This identity's name; only in open local mode, where nobody logs in, the form's name (or ``local``).
        """
        return (form_name or "local") if self.via == "open-local" else self.name


# ---------------------------------------------------------------------------- API keys


def hash_key(key: str) -> str:
    """SHA-256 of a key, as stored: the keys themselves are never written anywhere by roadseg."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    """One line of the key file: ``name role sha256-hex [revoked]``."""

    name: str
    role: Role
    sha256: str
    revoked: bool = False

    def line(self) -> str:
        """The entry as a key-file line."""
        return f"{self.name} {self.role.name} {self.sha256}" + (" revoked" if self.revoked else "")


def parse_keys(text: str, where: str) -> list[ApiKey]:
    """Key entries from lines (or ``;``-separated entries); ``#`` starts a comment. Errors name the line."""
    keys = []
    for number, raw in enumerate(text.replace(";", "\n").splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        revoked = fields[3:] == ["revoked"]
        if len(fields) not in (3, 4) or (len(fields) == 4 and not revoked):
            raise InvalidSettings(f"{where} line {number}: expected 'name role sha256-hex [revoked]'")
        name, role, digest = fields[:3]
        if role not in Role.__members__:
            raise InvalidSettings(f"{where} line {number}: role {role!r}; use {', '.join(Role.__members__)}")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InvalidSettings(f"{where} line {number}: the key must be stored as its 64-digit sha256 hex")
        keys.append(ApiKey(name, Role[role], digest, revoked))
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise InvalidSettings(f"{where}: each key needs its own name")
    return keys


class KeyRing:
    """The configured API keys: ``ROADSEG_API_KEYS`` plus ``ROADSEG_API_KEYS_FILE``, re-read when the file changes."""

    def __init__(self, inline: str, path: str | None):
        """Parse the inline keys now (bad entries stop the service); the file is read on first use."""
        self._inline = parse_keys(inline, "ROADSEG_API_KEYS")
        self._path = Path(path) if path else None
        self._stamp: tuple[int, int] | None = None
        self._from_file: list[ApiKey] = []
        self._lock = threading.Lock()

    def keys(self) -> list[ApiKey]:
        """Every configured key; a key file that went missing counts as empty (and is logged)."""
        if self._path is None:
            return list(self._inline)
        with self._lock:
            try:
                stat = self._path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
                if stamp != self._stamp:
                    self._from_file = parse_keys(self._path.read_text(), str(self._path))
                    self._stamp = stamp
            except FileNotFoundError:
                if self._stamp != (0, 0):
                    log.error("API key file %s is missing: no key from it is accepted", self._path)
                self._from_file, self._stamp = [], (0, 0)
            return self._inline + self._from_file

    def identify(self, key: str, via: Literal["api-key", "session"] = "api-key") -> Identity:
        """The identity of a presented key; :class:`Unauthenticated` for an unknown or revoked one."""
        return self.identify_digest(hash_key(key), via)

    def identify_digest(self, digest: str, via: Literal["api-key", "session"] = "api-key") -> Identity:
        """The identity of a key given by its SHA-256 (a session keeps only that).

        A revoked key is refused without its name: the name is the key owner's business, not the caller's.
        """
        for entry in self.keys():
            if secrets.compare_digest(entry.sha256, digest):
                if entry.revoked:
                    raise Unauthenticated("this API key was revoked")
                return Identity(entry.name, entry.role, via)
        raise Unauthenticated("unknown API key")


# ---------------------------------------------------------------------------- Identity-Aware Proxy


class IapVerifier:
    """Checks IAP's signed header: ES256 signature by one of IAP's keys, audience, issuer, expiry."""

    def __init__(
        self, audience: str, keys_file: str | None, refetch_s: float = 300, keys_url: str = IAP_KEYS_URL
    ) -> None:
        """Check assertions for ``audience``; keys from ``keys_file`` or fetched from ``keys_url`` when needed.

        An unknown key id refetches the keys at most once per ``refetch_s``: the header comes from anyone,
        and each refetch is an outbound request made while every other check waits on the lock.
        """
        self.audience = audience
        self._keys_file = keys_file
        self._keys_url = keys_url
        self._refetch_s = refetch_s
        self._keys: dict[str, Any] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def _load(self, force: bool) -> dict[str, Any]:
        import jwt

        with self._lock:
            age = time.monotonic() - self._fetched
            if self._keys and (self._keys_file or age < (self._refetch_s if force else IAP_KEYS_TTL_S)):
                return self._keys  # a refetch within the interval (also one a waiting thread just made) is skipped
            try:
                if self._keys_file:
                    document = json.loads(Path(self._keys_file).read_text())
                else:
                    document = httpx.get(self._keys_url, timeout=10).raise_for_status().json()
                keyset = jwt.PyJWKSet.from_dict(document)
            except (OSError, ValueError, httpx.HTTPError, jwt.PyJWTError) as exc:
                log.error("cannot load IAP's public keys from %s: %s", self._keys_file or self._keys_url, exc)
                self._fetched = time.monotonic()  # a failing source is asked again after the interval, not per request
                raise Unauthenticated("the IAP header cannot be checked now (no public keys); try again later") from exc
            self._keys = {key.key_id: key for key in keyset.keys if key.key_id}
            self._fetched = time.monotonic()
            return self._keys

    def verify(self, token: str) -> str:
        """The verified e-mail of an IAP assertion; :class:`Unauthenticated` naming what failed otherwise."""
        import jwt

        try:
            key_id = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"malformed IAP assertion: {exc}") from exc
        keys = self._load(force=False)
        if key_id not in keys and not self._keys_file:
            keys = self._load(force=True)  # IAP may have rotated its keys (at most one refetch per interval)
        if key_id not in keys:
            raise Unauthenticated("IAP assertion signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                keys[key_id],
                algorithms=["ES256"],
                audience=self.audience,
                issuer=IAP_ISSUER,
                options={"require": ["exp", "iat", "aud", "iss", "email"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"IAP assertion refused: {exc}") from exc
        return str(claims["email"])


def role_for_email(email: str, roles: dict[str, str]) -> Role | None:
    """The role of an e-mail: its own entry, else its ``@domain`` entry, else none."""
    roles = {who.lower(): role for who, role in roles.items()}  # e-mail addresses compare case-insensitively
    role = roles.get(email.lower()) or roles.get("@" + email.rpartition("@")[2].lower())
    return Role[role] if role else None


# ---------------------------------------------------------------------------- requests


@lru_cache(maxsize=4)
def _keyring(inline: str, path: str | None) -> KeyRing:
    return KeyRing(inline, path)


def keyring(settings: Settings) -> KeyRing:
    """The process's keys for these settings (one KeyRing per key source, so the file is watched once)."""
    return _keyring(settings.api_keys, settings.api_keys_file)


@lru_cache(maxsize=4)
def _iap(audience: str, keys_file: str | None, refetch_s: float) -> IapVerifier:
    return IapVerifier(audience, keys_file, refetch_s)


def is_loopback(host: str | None) -> bool:
    """Whether a client address is this machine (127.0.0.0/8, ::1)."""
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def identify(request: Request, settings: Settings) -> Identity:
    """Who sent ``request``.

    :class:`Unauthenticated` (401) when it cannot tell; :class:`Forbidden` (403) when an IAP identity
    has no role or open local mode sees a remote client.
    """
    if settings.auth_mode == "open-local":
        client = request.client.host if request.client else None
        if not is_loopback(client):
            raise Forbidden(
                f"this service runs in open local mode (no authentication) and answers only this machine, not {client}"
            )
        return Identity("local", Role.admin, "open-local")
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("use 'Authorization: Bearer <API key>'")
        return keyring(settings).identify(key.strip())
    if session := request.cookies.get(SESSION_COOKIE):
        return session_identity(settings, session)
    assertion = request.headers.get(IAP_HEADER)
    if assertion and settings.iap_audience:
        email = _iap(settings.iap_audience, settings.iap_keys_file, settings.iap_keys_refetch_seconds).verify(assertion)
        role = role_for_email(email, settings.iap_roles)
        if role is None:
            raise Forbidden(f"{email} has no role here (ROADSEG_IAP_ROLES)")
        return Identity(email, role, "iap")
    raise Unauthenticated(
        "authentication required: send 'Authorization: Bearer <API key>', sign in at /login, "
        "or come through Identity-Aware Proxy"
    )


#: Declares ``Authorization: Bearer`` in the OpenAPI schema, so /docs offers "Authorize" (the header
#: itself is checked by :func:`identify`).
BEARER = HTTPBearer(auto_error=False, description="An API key from `roadseg keys create`.")

#: Methods that change something: a browser must not be made to send them from another site.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def check_same_origin(request: Request) -> None:
    """Refuse a cross-site request that changes something (CSRF) when the browser's credentials carried it.

    Through IAP a browser is authenticated by IAP's cookie, which it would also send with a form
    another site makes it post. Browsers say where a request comes from (``Sec-Fetch-Site``, else
    ``Origin``); only same-origin ones may change anything. API keys need no check: a browser never
    adds an ``Authorization`` header by itself.
    """
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None:
        allowed = site in ("same-origin", "none")
    elif origin is not None:
        allowed = origin.split("://", 1)[-1] == request.headers.get("host")
    else:
        allowed = True  # not a browser: no ambient cookie to abuse
    if not allowed:
        raise Forbidden(f"cross-site {request.method} refused (from {origin or site}): use this site's own page")


def require(role: Role) -> Any:
    """Dependency for a router or route: the caller's :class:`Identity`, which must hold ``role`` or above.

    Each identity's requests count against ``ROADSEG_RATE_LIMIT_PER_MINUTE`` (429), and changes made
    by a browser identity must come from this site's own pages (:func:`check_same_origin`).
    """

    def dependency(request: Request, _: Annotated[Any, Depends(BEARER)]) -> Identity:
        settings = get_settings()
        # A request with a body was identified before its body was read (roadseg.http_api.RequestGuard).
        identity = getattr(request.state, "identity", None) or identify(request, settings)
        if settings.rate_limit_per_minute and identity.via != "open-local":
            limits.check_rate(settings.redis_url, identity.name, settings.rate_limit_per_minute)
        if identity.role < role:
            raise Forbidden(f"{identity.name} is a {identity.role.name}; this needs the {role.name} role")
        if identity.via != "api-key" and request.method in UNSAFE_METHODS:
            check_same_origin(request)
        request.state.identity = identity
        return identity

    return Depends(dependency)


def caller(request: Request) -> Identity:
    """The identity a router's :func:`require` already checked for this request."""
    return request.state.identity


CallerDep = Annotated[Identity, Depends(caller)]


def check_settings(settings: Settings) -> None:
    """Read the configured keys now, so a malformed entry stops the service at start-up (InvalidSettings)."""
    if settings.auth_mode == "required":
        keyring(settings).keys()


def uvicorn_host(argv: list[str]) -> str:
    """The address a uvicorn command line binds (``--host X``, ``--host=X``, ``UVICORN_HOST``; default 127.0.0.1)."""
    for i, arg in enumerate(argv):
        if arg == "--host" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--host="):
            return arg.partition("=")[2]
    return os.environ.get("UVICORN_HOST", "127.0.0.1")


def refuse_open_binding(settings: Settings, host: str) -> None:
    """Open local mode has no authentication: it may only listen on loopback (:class:`InvalidSettings` else)."""
    if settings.auth_mode == "open-local" and not is_loopback(host):
        raise InvalidSettings(
            f"ROADSEG_AUTH_MODE=open-local has no authentication: it listens on 127.0.0.1 only, not {host}"
        )


def describe_mode(settings: Settings) -> str:
    """One log line at start-up saying how requests are authenticated (and warning when they are not)."""
    if settings.auth_mode == "open-local":
        return "auth: OPEN LOCAL MODE (ROADSEG_AUTH_MODE=open-local): no authentication, loopback clients only"
    sources = []
    if settings.api_keys or settings.api_keys_file:
        sources.append(f"API keys ({settings.api_keys_file or 'ROADSEG_API_KEYS'})")
    if settings.iap_audience:
        sources.append(f"Identity-Aware Proxy (audience {settings.iap_audience})")
    if not sources:
        return "auth: required, but no API keys and no IAP audience are configured: every request will get 401"
    return "auth: required; identities from " + " and ".join(sources)


# ---------------------------------------------------------------------------- routes


class WhoAmI(BaseModel):
    """The caller as this service sees it."""

    name: str = Field(description="API key name, IAP e-mail, or ``local`` in open local mode.")
    role: RoleName
    via: Via


class KeyInfo(BaseModel):
    """A configured API key (never the key or its hash)."""

    name: str
    role: RoleName
    revoked: bool


router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.get("/me", response_model=WhoAmI, dependencies=[require(Role.viewer)])
def who_am_i(identity: CallerDep) -> dict[str, str]:
    """Who this service takes the caller for, and with which role."""
    return {"name": identity.name, "role": identity.role.name, "via": identity.via}


@router.get("/keys", response_model=list[KeyInfo], dependencies=[require(Role.admin)])
def list_keys() -> list[dict[str, Any]]:
    """The configured API keys: name, role, revoked (admin)."""
    settings = get_settings()
    keys = keyring(settings).keys()
    return [{"name": k.name, "role": k.role.name, "revoked": k.revoked} for k in keys]


# ---------------------------------------------------------------------------- browser sessions

#: Cookie holding a browser's session id after /login (HttpOnly: page scripts never see it).
SESSION_COOKIE = "roadseg_session"
#: How long a browser stays signed in.
SESSION_SECONDS = 8 * 3600


def _session_key(session_id: str) -> str:
    """Redis key of a session: the id's hash, so the store's contents cannot be replayed as cookies."""
    return "roadseg:session:" + hashlib.sha256(session_id.encode()).hexdigest()


def create_session(settings: Settings, key_digest: str) -> str:
    """A new random session id for the key with this SHA-256, kept in Redis for :data:`SESSION_SECONDS`.

    Redis holds the sessions so that every replica knows them and logging out on one ends them on all.
    """
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


login_router = APIRouter(include_in_schema=False)

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>roadseg: sign in</title></head>
<body><main>
<h1>roadseg: sign in</h1>
<p>Paste an API key (made with <code>roadseg keys create NAME --role ROLE</code>).
The browser keeps a session (not the key) in a cookie that page scripts cannot read, for 8 hours.</p>
{message}
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label for="key">API key</label> <input id="key" name="key" type="password" autocomplete="off" required autofocus>
<button type="submit">Sign in</button>
</form>
</main></body></html>
"""


def wants_login_page(request: Request) -> bool:
    """A person's browser opening a page (not an API client, not an htmx fragment): send it to /login."""
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
        and "hx-request" not in request.headers
        and not request.url.path.startswith(("/api/", "/login"))
    )


def redirect_to_login(request: Request) -> RedirectResponse:
    """303 to /login, coming back to the page asked for."""
    return RedirectResponse(f"/login?next={quote(_local_path(request.url.path), safe='/')}", status_code=303)


def _local_path(path: str | None) -> str:
    """Only a path on this site may be a ``next`` (no open redirect to another host)."""
    return path if path and path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def _login_page(next_path: str, message: str = "", status: int = 200) -> HTMLResponse:
    text = f'<p role="alert"><strong>{escape(message)}</strong></p>' if message else ""
    return HTMLResponse(LOGIN_PAGE.format(message=text, next=escape(_local_path(next_path))), status_code=status)


@login_router.get("/login")
def login_form(next: str = "/") -> HTMLResponse:  # noqa: A002 - the query parameter's name
    """The sign-in form for browsers without Identity-Aware Proxy."""
    return _login_page(next)


@login_router.post("/login")
async def login(request: Request) -> Response:
    """Check the key; start a session whose id goes in an HttpOnly, SameSite=Strict cookie; back to the page."""
    check_same_origin(request)
    form = await request.form()
    key, next_path = str(form.get("key") or "").strip(), str(form.get("next") or "/")
    settings = get_settings()
    try:
        identity = keyring(settings).identify(key)
    except Unauthenticated as exc:
        return _login_page(next_path, f"{exc}: try again", status=401)
    session_id = create_session(settings, hash_key(key))
    response = RedirectResponse(_local_path(next_path), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https",
    )
    log.info("%s signed in (%s)", identity.name, identity.role.name)
    return response


@login_router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    """End the browser's session (on the server: a copied cookie stops working too)."""
    check_same_origin(request)
    if session_id := request.cookies.get(SESSION_COOKIE):
        end_session(get_settings(), session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def write_key_file(path: Path, keys: list[ApiKey]) -> None:
    """Write a key file atomically (a reader never sees half of it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("# roadseg API keys: name role sha256-hex [revoked]\n" + "".join(k.line() + "\n" for k in keys))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
