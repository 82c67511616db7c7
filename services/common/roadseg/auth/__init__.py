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

The modules, each importing only those above it:

* :mod:`.identity`: :class:`Role` and :class:`Identity` (who made a request);
* :mod:`.keys`: API keys (hashing, the key file, :class:`KeyRing`);
* :mod:`.iap`: Identity-Aware Proxy's signed header and the role of its e-mail;
* :mod:`.sessions`: browser sessions in Redis after ``/login``;
* :mod:`.csrf`: same-site checks for changes a browser's credentials carried;
* :mod:`.access`: :func:`identify` a request, :func:`require` a role (the routers' dependency);
* :mod:`.startup`: what a service checks and logs about authentication when it starts;
* :mod:`.routes`: ``/api/v1/auth`` (``/me``, ``/keys``);
* :mod:`.login`: ``/login`` and ``/logout`` for browsers (the page is ``templates/login.html``).

Everything other code uses is importable from ``roadseg.auth`` itself.
"""

from __future__ import annotations

from roadseg.auth.access import BEARER, CallerDep, caller, identify, is_loopback, require
from roadseg.auth.csrf import UNSAFE_METHODS, check_same_origin
from roadseg.auth.iap import (
    IAP_HEADER,
    IAP_ISSUER,
    IAP_KEYS_TTL_S,
    IAP_KEYS_URL,
    IapVerifier,
    iap_identity,
    role_for_email,
)
from roadseg.auth.identity import Identity, Role, RoleName, Via
from roadseg.auth.keys import KEY_PREFIX, ApiKey, KeyRing, hash_key, keyring, new_key, parse_keys, write_key_file
from roadseg.auth.login import login_router, redirect_to_login, wants_login_page
from roadseg.auth.routes import KeyInfo, WhoAmI, router
from roadseg.auth.sessions import SESSION_COOKIE, SESSION_SECONDS, create_session, end_session, session_identity
from roadseg.auth.startup import check_settings, describe_mode, refuse_open_binding, uvicorn_host

__all__ = [
    "BEARER",
    "IAP_HEADER",
    "IAP_ISSUER",
    "IAP_KEYS_TTL_S",
    "IAP_KEYS_URL",
    "KEY_PREFIX",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "UNSAFE_METHODS",
    "ApiKey",
    "CallerDep",
    "IapVerifier",
    "Identity",
    "KeyInfo",
    "KeyRing",
    "Role",
    "RoleName",
    "Via",
    "WhoAmI",
    "caller",
    "check_same_origin",
    "check_settings",
    "create_session",
    "describe_mode",
    "end_session",
    "hash_key",
    "iap_identity",
    "identify",
    "is_loopback",
    "keyring",
    "login_router",
    "new_key",
    "parse_keys",
    "redirect_to_login",
    "refuse_open_binding",
    "require",
    "role_for_email",
    "router",
    "session_identity",
    "uvicorn_host",
    "wants_login_page",
    "write_key_file",
]
