"""What a service checks and says about authentication when it starts."""

from __future__ import annotations

import os

from roadseg.auth.access import is_loopback
from roadseg.auth.keys import keyring
from roadseg.config import InvalidSettings, Settings


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
