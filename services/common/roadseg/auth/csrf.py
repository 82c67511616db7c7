"""CSRF protection: a change a browser's own credentials carried must come from this site's pages."""

from __future__ import annotations

from fastapi import Request

from roadseg.errors import Forbidden

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
