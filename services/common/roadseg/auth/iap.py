"""Identity-Aware Proxy: the signed ``x-goog-iap-jwt-assertion`` header it adds, verified, and the role of its e-mail.

A header anyone could forge is never trusted on its own: the signature is checked against IAP's
public keys, and so are the audience, issuer and expiry. ``ROADSEG_IAP_ROLES`` gives e-mails (or
whole ``@domains``) their role.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx

from roadseg.auth.identity import Identity, Role
from roadseg.config import Settings
from roadseg.errors import Forbidden, Unauthenticated

log = logging.getLogger(__name__)

#: Header Identity-Aware Proxy adds to every request it lets through, and how it signs it.
IAP_HEADER = "x-goog-iap-jwt-assertion"
IAP_ISSUER = "https://cloud.google.com/iap"
IAP_KEYS_URL = "https://www.gstatic.com/iap/verify/public_key-jwk"
#: Seconds IAP's fetched public keys are reused (Google rotates them rarely; an unknown key id refetches, at
#: most once per ``ROADSEG_IAP_KEYS_REFETCH_SECONDS``).
IAP_KEYS_TTL_S = 3600


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


@lru_cache(maxsize=4)
def _iap(audience: str, keys_file: str | None, refetch_s: float) -> IapVerifier:
    return IapVerifier(audience, keys_file, refetch_s)


def iap_identity(settings: Settings, assertion: str) -> Identity:
    """The identity of an IAP assertion (``ROADSEG_IAP_AUDIENCE`` must be set).

    :class:`Unauthenticated` when the assertion does not verify; :class:`Forbidden` when its e-mail has no role.
    """
    if not settings.iap_audience:
        raise Unauthenticated("this service does not trust Identity-Aware Proxy (ROADSEG_IAP_AUDIENCE is not set)")
    email = _iap(settings.iap_audience, settings.iap_keys_file, settings.iap_keys_refetch_seconds).verify(assertion)
    role = role_for_email(email, settings.iap_roles)
    if role is None:
        raise Forbidden(f"{email} has no role here (ROADSEG_IAP_ROLES)")
    return Identity(email, role, "iap")
