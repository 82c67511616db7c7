"""Who sent a request (:func:`identify`) and whether they may use a route (:func:`require`, a dependency).

A request names who it is with ``Authorization: Bearer <API key>``, a session cookie from ``/login``,
or IAP's signed header; in open local mode it is ``local`` (an admin) when it comes from this machine.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from fastapi import Depends, Request, params
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from roadseg import limits
from roadseg.auth.csrf import UNSAFE_METHODS, check_same_origin
from roadseg.auth.iap import IAP_HEADER, iap_identity
from roadseg.auth.identity import Identity, Role
from roadseg.auth.keys import keyring
from roadseg.auth.sessions import SESSION_COOKIE, session_identity
from roadseg.config import Settings, get_settings
from roadseg.errors import Forbidden, Unauthenticated


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
        return iap_identity(settings, assertion)
    raise Unauthenticated(
        "authentication required: send 'Authorization: Bearer <API key>', sign in at /login, "
        "or come through Identity-Aware Proxy"
    )


#: Declares ``Authorization: Bearer`` in the OpenAPI schema, so /docs offers "Authorize" (the header
#: itself is checked by :func:`identify`).
BEARER = HTTPBearer(auto_error=False, description="An API key from `roadseg keys create`.")


def require(role: Role) -> params.Depends:
    """Dependency for a router or route: the caller's :class:`Identity`, which must hold ``role`` or above.

    Each identity's requests count against ``ROADSEG_RATE_LIMIT_PER_MINUTE`` (429), and changes made
    by a browser identity must come from this site's own pages (:func:`check_same_origin`).
    """

    def dependency(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> Identity:
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
