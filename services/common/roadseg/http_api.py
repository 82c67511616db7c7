"""What every roadseg HTTP service shares: the app factory, typed dependencies, errors, health, queueing.

Each service (ingest, labeler, gateway) builds its app with :func:`create_service_app` and adds
module-level ``APIRouter``s, one per resource. Handlers reach settings and storage only through
:data:`SettingsDep` and :data:`StorageDep`, so there is one way to each and tests can hand an app its
own storage. Errors the user can fix (:class:`~roadseg.errors.RoadsegError`) become the same
``{"detail": ...}`` body with their status code everywhere, and a task queue that cannot be reached
is the same 503 (:class:`QueueUnavailable`) in every service.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from roadseg import __version__, auth, limits
from roadseg.config import Settings, get_settings
from roadseg.errors import Overloaded, QueueUnavailable, RoadsegError, Unauthenticated
from roadseg.storage import Storage, get_storage

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """Body of every 4xx/5xx answer a user can act on."""

    detail: str = Field(description="What went wrong, in words meant for the user.")


class Health(BaseModel):
    """``/healthz``: ``ok`` when the service can do its work; services add what they serve."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description="``ok``, or why the service cannot work right now (answered with 503).")


def settings_dep() -> Settings:
    """The validated settings (read once; an impossible combination already stopped the process)."""
    return get_settings()


def storage_dep(request: Request) -> Storage:
    """The storage the app was created with."""
    return request.app.state.storage


SettingsDep = Annotated[Settings, Depends(settings_dep)]
StorageDep = Annotated[Storage, Depends(storage_dep)]

#: Error answers documented on every router (shown in ``/docs``).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 422, 429, 503, 507)
}

HealthCheck = Callable[[Request], Health]

#: Headers on every answer. The pages load scripts and styles only from this origin (no inline code:
#: htmx's indicator styles are switched off, the review page's script and styles are files), images
#: also as data:/blob: URLs (the page's previews), and no other site may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
#: FastAPI's documentation pages load Swagger UI / ReDoc from a CDN with an inline script: they keep
#: every header but the Content-Security-Policy.
DOCS_PATHS = ("/docs", "/redoc")


def create_service_app(
    title: str,
    description: str,
    storage: Storage | None = None,
    routers: Sequence[APIRouter] = (),
    health: HealthCheck | None = None,
    html_error: Callable[[str], str] | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """A FastAPI app with the shared error handler, ``/healthz``, ``/api/v1/auth``, the docs and ``routers``.

    Each router names the role it needs (``dependencies=[auth.require(...)]``); only ``/healthz``
    and static files are open (the docs need a viewer).

    ``storage`` defaults to the configured one (``ROADSEG_STORAGE_URL``). ``health`` answers
    ``/healthz`` (default: ``ok`` while the process answers). ``html_error`` renders errors of the
    ``/ui/`` routes (htmx fragments) as HTML instead of JSON.
    """
    settings = get_settings()  # an impossible ROADSEG_* setting stops the service here (InvalidSettings)
    auth.check_settings(settings)  # a malformed key entry stops the service too
    auth.refuse_open_binding(settings, auth.uvicorn_host(sys.argv))
    (log.warning if settings.auth_mode == "open-local" else log.info)("%s: %s", title, auth.describe_mode(settings))
    app = FastAPI(
        title=title,
        version=__version__,
        description=description,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.storage = storage or get_storage()
    _add_docs(app, title)

    @app.exception_handler(RoadsegError)
    async def roadseg_error(request: Request, exc: RoadsegError) -> Response:
        if exc.status_code >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        headers = exc.headers
        if isinstance(exc, Unauthenticated) and auth.wants_login_page(request):
            return auth.redirect_to_login(request)
        if html_error is not None and request.url.path.startswith("/ui/"):
            return HTMLResponse(html_error(str(exc)), status_code=exc.status_code, headers=headers)
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code, headers=headers)

    @app.middleware("http")
    async def size_limit_and_security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if (refused := _too_large(request, settings)) is not None:
            return refused
        response = await call_next(request)
        docs = request.url.path.startswith(DOCS_PATHS)
        for name, value in SECURITY_HEADERS.items():
            if not (docs and name == "Content-Security-Policy"):
                response.headers.setdefault(name, value)
        return response

    check = health or (lambda request: Health(status="ok"))

    @app.get(
        "/healthz", tags=["service"], response_model=None, responses={200: {"model": Health}, 503: {"model": Health}}
    )
    def healthz(request: Request) -> JSONResponse:
        """Whether the service can work now (200) or not (503, with the reason in ``status``)."""
        answer = check(request)
        return JSONResponse(answer.model_dump(mode="json"), status_code=200 if answer.status == "ok" else 503)

    for router in (auth.router, auth.login_router, *routers):
        app.include_router(router, responses=ERROR_RESPONSES)
    return app


#: Largest JSON body (routes, scene URIs): requests are small; anything bigger is refused unread.
MAX_JSON_BYTES = 1024 * 1024
#: Room for the multipart framing and form fields beside an upload of ``ROADSEG_MAX_UPLOAD_BYTES``.
FORM_OVERHEAD_BYTES = 64 * 1024


def _too_large(request: Request, settings: Settings) -> Response | None:
    """413 from the declared length alone, before a byte is received: JSON over 1 MiB, uploads over the limit.

    Uploads without a declared length are still cut off at ``ROADSEG_MAX_UPLOAD_BYTES`` while stored.
    """
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        return None
    size = int(declared)
    if request.headers.get("content-type", "").startswith("application/json"):
        if size <= MAX_JSON_BYTES:
            return None
        detail = f"a JSON body of {size} bytes exceeds the limit of {MAX_JSON_BYTES} bytes"
    elif size <= settings.max_upload_bytes + FORM_OVERHEAD_BYTES:
        return None
    else:
        detail = f"upload exceeds the limit of {settings.max_upload_bytes} bytes"
    return JSONResponse({"detail": detail}, status_code=413, headers=SECURITY_HEADERS)


def _add_docs(app: FastAPI, title: str) -> None:
    """``/openapi.json``, ``/docs`` and ``/redoc`` for viewers and up (the API's shape is not for anyone)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    viewer = [auth.require(auth.Role.viewer)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=viewer)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=viewer)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} - API docs")

    @app.get("/redoc", include_in_schema=False, dependencies=viewer)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{title} - API docs")


def enqueue(send: Callable[[], Any], what: str, undo: Callable[[str], Any], queue: str) -> None:
    """Queue a task on ``queue`` with ``send()``; when that cannot be done, call ``undo(message)`` and raise.

    A broker that is down is :class:`QueueUnavailable` (503); a queue already holding
    ``ROADSEG_MAX_QUEUED_TASKS`` tasks is :class:`Overloaded` (503 with ``Retry-After``), so a burst
    of submissions waits at the client instead of piling up unbounded work. ``undo`` leaves the job
    so that nothing is lost and a re-submission works: ingest and the labeler mark the job failed
    (submitting again queues it), the gateway drops the job it made.
    """
    settings = get_settings()
    limit = settings.max_queued_tasks
    try:
        depth = limits.queue_depth(settings.redis_url, queue) if limit else 0
        full = bool(limit) and depth >= limit
        if not full:
            send()
    except Exception as exc:  # noqa: BLE001 - kombu/redis raise many kinds of connection errors
        message = f"could not queue the {what}: the task queue is unavailable ({exc})"
        undo(message)
        raise QueueUnavailable(f"{message}; submit it again later") from exc
    if full:
        message = f"could not queue the {what}: {depth} tasks are waiting on the {queue} queue (limit {limit})"
        undo(message)
        raise Overloaded(f"{message}; submit it again in a minute")
