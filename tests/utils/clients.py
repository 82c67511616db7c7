"""In-process clients of our apps."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

#: Client address of :func:`local_client`: this machine, as for ``make up`` (open local mode answers only it).
LOOPBACK = ("127.0.0.1", 50000)


def local_client(app: Any, **kwargs: Any) -> TestClient:
    """A TestClient whose requests come from 127.0.0.1 (Starlette's default client host is ``testclient``)
    and name ``localhost`` (open local mode answers only loopback host names)."""
    return TestClient(app, client=LOOPBACK, **{"base_url": "http://localhost", **kwargs})


def service_apps(storage: Any = None, predictor: Any = None) -> dict[str, Any]:
    """The apps of the three HTTP services, as their ``main.py`` build them (optionally on ``storage``,
    the gateway with ``predictor`` instead of the configured one)."""
    from roadseg.gateway.api import create_app as gateway
    from roadseg.ingest.api import create_app as ingest
    from roadseg.label_service import create_app as labeler

    return {
        "ingest": ingest(storage),
        "labeler": labeler(storage),
        "gateway": gateway(predictor=predictor, storage=storage),
    }
