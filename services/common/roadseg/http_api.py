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
import re
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roadseg import __version__, auth, limits
from roadseg.config import Settings, get_settings
from roadseg.errors import Overloaded, QueueUnavailable, RoadsegError, Unauthenticated
from roadseg.storage import Storage, get_storage

log = logging.getLogger(__name__)

#: The icon browsers ask every site for (``/favicon.ico``): one file for all services, so a page's
#: console shows no 404 on first load.
FAVICON = Path(__file__).resolve().parent / "static" / "favicon.ico"


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

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": describe_validation_errors(exc.errors())}, status_code=422)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
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

    async def favicon(request: Request) -> Response:
        return FileResponse(FAVICON, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})

    app.add_route("/favicon.ico", favicon, include_in_schema=False)  # open, as static files are

    for router in (auth.router, auth.login_router, *routers):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.add_middleware(RequestGuard, service=app)  # outermost: before anything reads the body
    return app


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """A 422's detail: where and what, never the input itself (a body of megabytes must not come back)."""
    parts = []
    for error in errors[:20]:
        where = ".".join(str(part) for part in error.get("loc", ()))[:200]
        parts.append(f"{where}: {str(error.get('msg', 'invalid'))[:200]}")
    more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
    return "invalid request: " + "; ".join(parts) + more


#: Room for the multipart framing and form fields beside an upload of ``ROADSEG_MAX_UPLOAD_BYTES``.
FORM_OVERHEAD_BYTES = 64 * 1024
#: Host names open local mode answers when ``ROADSEG_ALLOWED_HOSTS`` is empty (DNS rebinding protection).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: Paths answered whatever the Host header (Kubernetes probes name the pod's address) and bodies sent without
#: an identity (the sign-in form carries the key in its body).
ANY_HOST_PATHS = ("/healthz",)
ANONYMOUS_BODY_PATHS = ("/login",)


class RequestGuard:
    """ASGI middleware around each service, in front of everything that reads a request's body.

    In order: the Host header must name this site (:func:`host_allowed`, DNS rebinding); a request with
    a body must come from a known identity (checked from its headers, so nobody unknown gets a byte
    buffered, parsed or spooled to disk); and the body may only be as long as its route allows, counted
    on the bytes that arrive (a chunked body or a wrong ``Content-Length`` changes nothing): routes that
    take uploads (form or file fields) ``ROADSEG_MAX_UPLOAD_BYTES``, every other route
    ``ROADSEG_MAX_JSON_BYTES``, whatever its ``Content-Type`` says. A body that outgrows its limit gets
    413 at once and the app sees the client disconnect.
    """

    def __init__(self, app: ASGIApp, service: FastAPI) -> None:
        """Guard ``app`` (the middleware stack of ``service``, whose routes say which ones take uploads).

        Settings are read per request (:func:`get_settings`), as the routes' own dependencies read them,
        so the guard and the route always judge a request by the same settings.
        """
        self.app = app
        self.service = service
        self._upload_routes: list[tuple[re.Pattern[str], set[str]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request; pass it on with a ``receive`` that counts the body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            self._check_host(request)
            if has_body(request) and request.url.path not in ANONYMOUS_BODY_PATHS:
                identity = await run_in_threadpool(auth.identify, request, get_settings())
                scope.setdefault("state", {})["identity"] = identity
        except RoadsegError as exc:
            await _error(exc.status_code, str(exc), exc.headers)(scope, receive, send)
            return
        limit = self.body_limit(request)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _error(413, self._too_large(limit))(scope, receive, send)
            return
        await self._pass_counted(scope, receive, send, limit)

    def _too_large(self, limit: int) -> str:
        """The 413's words: an upload's limit as configured (the form's framing allowance aside)."""
        settings = get_settings()
        if limit == settings.max_upload_bytes + FORM_OVERHEAD_BYTES:
            return f"upload exceeds the limit of {settings.max_upload_bytes} bytes"
        return f"the request body exceeds the limit of {limit} bytes for this route"

    async def _pass_counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused, started
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        started = True
                        await _error(413, self._too_large(limit))(scope, receive, send)
                    return {"type": "http.disconnect"}  # the app stops reading; its own answer is dropped
            return message

        async def app_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted_receive, app_send)

    def _check_host(self, request: Request) -> None:
        if request.url.path not in ANY_HOST_PATHS and not host_allowed(request.headers.get("host", ""), get_settings()):
            raise BadHost("the Host header names a site this service does not serve (ROADSEG_ALLOWED_HOSTS)")

    def body_limit(self, request: Request) -> int:
        """Bytes the body of this request may have.

        A multipart body to an upload route: an upload's worth. Anything else (another route, or JSON and
        urlencoded forms, which are read whole into memory): a JSON's worth.
        """
        if self._upload_routes is None:
            self._upload_routes = [
                (route.path_regex, route.methods or set()) for route in api_routes(self.service) if takes_upload(route)
            ]
        path, method = request.url.path, request.method
        multipart = request.headers.get("content-type", "").strip().lower().startswith("multipart/form-data")
        settings = get_settings()
        if multipart and any(regex.match(path) and method in methods for regex, methods in self._upload_routes):
            return settings.max_upload_bytes + FORM_OVERHEAD_BYTES
        return settings.max_json_bytes


class BadHost(RoadsegError):
    """A Host header that names another site (DNS rebinding): 400, as Starlette's TrustedHostMiddleware."""

    status_code = 400


def host_allowed(host_header: str, settings: Settings) -> bool:
    """Whether the Host header (port dropped) is one of ``ROADSEG_ALLOWED_HOSTS``.

    Empty: loopback names in open local mode (where a rebinding page would otherwise act as the local
    admin), any host otherwise (every request then needs a key or IAP, which a rebinding page lacks).
    """
    allowed = settings.allowed_hosts or (list(LOOPBACK_HOSTS) if settings.auth_mode == "open-local" else ["*"])
    if "*" in allowed:
        return True
    host = host_header.strip().lower()
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
    if host.count(":") > 1 and not host.startswith("["):
        name = host  # a bare IPv6 address
    return name in {h.lower() for h in allowed}


def has_body(request: Request) -> bool:
    """Whether a request announces a body (a length above 0, or chunked transfer)."""
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length.strip() not in ("", "0"))


def takes_upload(route: APIRoute) -> bool:
    """Whether a route reads form or file fields (an upload), rather than a small JSON body or nothing."""
    return any(isinstance(field.field_info, params.Form) for field in route.dependant.body_params)


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every APIRoute of an app, also those of included routers (FastAPI >= 0.130 wraps them)."""
    found: list[APIRoute] = []
    for route in app.routes:
        router = getattr(route, "original_router", None)
        found += [r for r in (router.routes if router else [route]) if isinstance(r, APIRoute)]
    return found


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The shared error body, with the security headers (answered before the app and its middleware)."""
    return JSONResponse({"detail": detail}, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


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
        log.error("could not queue the %s on %s: %s", what, queue, exc)  # the broker's address stays in the log
        message = f"could not queue the {what}: the task queue is unavailable"
        undo(message)
        raise QueueUnavailable(f"{message}; submit it again later") from exc
    if full:
        message = f"could not queue the {what}: {depth} tasks are waiting on the {queue} queue (limit {limit})"
        undo(message)
        raise Overloaded(f"{message}; submit it again in a minute")
