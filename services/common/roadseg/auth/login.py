"""Signing in with a browser that does not come through IAP: ``/login`` (paste an API key), ``/logout``.

A person's browser opening a page without an identity is sent to ``/login`` and back to the page
afterwards; the key becomes a session (:mod:`.sessions`), never a cookie itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from roadseg.auth.csrf import check_same_origin
from roadseg.auth.keys import hash_key, keyring
from roadseg.auth.sessions import SESSION_COOKIE, SESSION_SECONDS, create_session, end_session
from roadseg.config import get_settings
from roadseg.errors import Unauthenticated

log = logging.getLogger(__name__)

#: The sign-in page's template (``login.html``: autoescaped).
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))

login_router = APIRouter(include_in_schema=False)


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


def _login_page(request: Request, next_path: str, message: str = "", status: int = 200) -> HTMLResponse:
    context = {"next_path": _local_path(next_path), "message": message, "hours": SESSION_SECONDS // 3600}
    return templates.TemplateResponse(request, "login.html", context, status_code=status)


@login_router.get("/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002 - the query parameter's name
    """The sign-in form for browsers without Identity-Aware Proxy."""
    return _login_page(request, next)


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
        return _login_page(request, next_path, f"{exc}: try again", status=401)
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
