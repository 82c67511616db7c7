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
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from roadseg import __version__
from roadseg.config import Settings, get_settings
from roadseg.errors import QueueUnavailable, RoadsegError
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
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 404, 413, 422, 503)}

HealthCheck = Callable[[Request], Health]


def create_service_app(
    title: str,
    description: str,
    storage: Storage | None = None,
    routers: Sequence[APIRouter] = (),
    health: HealthCheck | None = None,
    html_error: Callable[[str], str] | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """A FastAPI app with the shared error handler, ``/healthz`` and ``routers``.

    ``storage`` defaults to the configured one (``ROADSEG_STORAGE_URL``). ``health`` answers
    ``/healthz`` (default: ``ok`` while the process answers). ``html_error`` renders errors of the
    ``/ui/`` routes (htmx fragments) as HTML instead of JSON.
    """
    get_settings()  # an impossible ROADSEG_* setting stops the service here (InvalidSettings)
    app = FastAPI(title=title, version=__version__, description=description, lifespan=lifespan)
    app.state.storage = storage or get_storage()

    @app.exception_handler(RoadsegError)
    async def roadseg_error(request: Request, exc: RoadsegError) -> Response:
        if exc.status_code >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        if html_error is not None and request.url.path.startswith("/ui/"):
            return HTMLResponse(html_error(str(exc)), status_code=exc.status_code)
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    check = health or (lambda request: Health(status="ok"))

    @app.get(
        "/healthz", tags=["service"], response_model=None, responses={200: {"model": Health}, 503: {"model": Health}}
    )
    def healthz(request: Request) -> JSONResponse:
        """Whether the service can work now (200) or not (503, with the reason in ``status``)."""
        answer = check(request)
        return JSONResponse(answer.model_dump(mode="json"), status_code=200 if answer.status == "ok" else 503)

    for router in routers:
        app.include_router(router, responses=ERROR_RESPONSES)
    return app


def enqueue(send: Callable[[], Any], what: str, undo: Callable[[str], Any]) -> None:
    """Queue a task with ``send()``; when the broker is down call ``undo(message)`` and raise 503.

    ``undo`` leaves the job so that nothing is lost and a re-submission works: ingest and the
    labeler mark the job failed (submitting again queues it), the gateway drops the job it made.
    """
    try:
        send()
    except Exception as exc:  # noqa: BLE001 - kombu/redis raise many kinds of connection errors
        message = f"could not queue the {what}: the task queue is unavailable ({exc})"
        undo(message)
        raise QueueUnavailable(f"{message}; submit it again later") from exc
