"""The HTTP layer every service shares: one error body, /healthz, documented schemas, queue-down answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from roadseg.storage import LocalStorage
from utils.clients import local_client, service_apps
from utils.paths import REPO
from utils.processes import free_port


def _apps(tmp_path):
    return service_apps(LocalStorage(tmp_path / "storage"))


def test_every_json_endpoint_documents_its_schema(settings_env, tmp_path):
    """/docs shows the real answer of each JSON route (response_model), and every router's error body."""
    for service, app in _apps(tmp_path).items():
        spec = app.openapi()
        operations = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
        assert operations, service
        for path, method, op in operations:
            ok = next(op["responses"][code] for code in ("200", "201", "202") if code in op["responses"])
            content = ok.get("content", {})
            if "application/json" not in content:
                continue  # files, images and HTML pages
            schema = content["application/json"]["schema"]
            schema = schema["items"] if schema.get("type") == "array" else schema
            # A model or nothing (e.g. a decision that was cleared): the model is the schema.
            schema = next((s for s in schema.get("anyOf", []) if s.get("type") != "null"), schema)
            assert "$ref" in schema or schema.get("type") == "object" and schema.get("properties"), (
                f"{service} {method.upper()} {path} has no response schema: {schema}"
            )
            if path != "/healthz":
                assert op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
        documented = {name for name in spec["components"]["schemas"]}
        expected = {"ingest": {"SceneRecord", "SceneAccepted"}, "labeler": {"LabelRunRecord", "DatasetExport"}}
        assert expected.get(service, {"Prediction", "ServedModelCard", "Route"}) <= documented, service


def test_health_and_errors_look_the_same_in_every_service(settings_env, tmp_path):

    for service, app in _apps(tmp_path).items():
        if service == "gateway":
            continue  # its /healthz needs a model: tests/gateway/test_gateway_api.py
        with local_client(app) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            missing = {"ingest": "/api/v1/scenes/nope", "labeler": "/api/v1/label-runs/nope"}[service]
            answer = client.get(missing)
            assert answer.status_code == 404 and answer.json() == {"detail": answer.json()["detail"]}
            assert "nope" in answer.json()["detail"]


def test_every_service_serves_a_favicon(settings_env, tmp_path):
    """Browsers ask each site for /favicon.ico: a 404 there is the first thing a newcomer sees in the console."""
    for service, app in _apps(tmp_path).items():
        answer = local_client(app).get("/favicon.ico")  # no lifespan: the gateway's model is not needed
        assert answer.status_code == 200, service
        assert answer.headers["content-type"] == "image/x-icon" and answer.content[:4] == b"\x00\x00\x01\x00"


def test_a_queue_that_is_down_is_the_same_503_everywhere_and_loses_nothing(settings_env, tmp_path):
    """Real services in a fresh process whose broker port has nothing listening on it."""
    env = {
        **os.environ,
        **settings_env,
        "ROADSEG_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "ROADSEG_SYNC_PREDICT_MAX_PIXELS": "1",  # every upload is queued
        "PYTHONPATH": str(REPO / "tests"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "utils.queue_down", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[0].removeprefix("RESULT "))
    for service in ("ingest", "labeler", "gateway"):
        answer = result[service]
        assert answer["status"] == 503, (service, answer)
        assert "the task queue is unavailable" in answer["body"]["detail"], (service, answer)
        assert "submit it again later" in answer["body"]["detail"], (service, answer)
        assert "127.0.0.1" not in answer["body"]["detail"] and "redis" not in answer["body"]["detail"].lower()  # #30
    # Ingest and the labeler keep the job, marked failed, so submitting again queues it (and the upload is kept).
    for service in ("ingest", "labeler"):
        record = result[service]["record"]
        assert record["status"] == "failed" and "task queue is unavailable" in record["error"], (service, record)
    assert any(key.endswith("/source.tif") for key in result["ingest"]["keys"])
    # The gateway keeps no job that nobody will ever run.
    assert result["gateway"]["keys"] == []


@pytest.mark.parametrize("service", ["ingest", "labeler", "gateway"])
def test_impossible_settings_stop_each_service_at_start_naming_the_variable(
    service, settings_env, monkeypatch, tmp_path
):
    from roadseg.config import InvalidSettings, get_settings

    monkeypatch.setenv("ROADSEG_TILE_OVERLAP", "600")  # overlap >= the 512 px tile
    get_settings.cache_clear()
    module = {"ingest": "roadseg.ingest.api", "labeler": "roadseg.label_service", "gateway": "roadseg.gateway.api"}
    create_app = __import__(module[service], fromlist=["create_app"]).create_app
    with pytest.raises(InvalidSettings, match="ROADSEG_TILE_OVERLAP"):
        create_app(storage=LocalStorage(tmp_path))


def test_every_answer_carries_the_security_headers(settings_env, tmp_path):
    """Pages, JSON, errors and static files: no inline code, no framing, no sniffing, no referrer."""
    from roadseg.http_api import SECURITY_HEADERS

    for service, app in _apps(tmp_path).items():
        with local_client(app) as client:
            answers = [client.get("/"), client.get("/api/v1/auth/me"), client.get("/api/v1/nope")]
            answers.append(client.get("/vendor/htmx.min.js" if service == "gateway" else "/static/review.js"))
            for answer in answers:
                for name, value in SECURITY_HEADERS.items():
                    assert answer.headers.get(name) == value, (service, answer.request.url, name)
            csp = answers[0].headers["content-security-policy"]
            assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            docs = client.get("/docs")  # Swagger UI needs its CDN and an inline script
            assert docs.status_code == 200 and "content-security-policy" not in docs.headers
            assert docs.headers["x-frame-options"] == "DENY"


def test_oversized_requests_are_refused_before_they_are_read(settings_env, tmp_path, monkeypatch):
    """From the declared length, in every service (the shared middleware), with the security headers."""
    from roadseg.config import get_settings

    monkeypatch.setenv("ROADSEG_MAX_UPLOAD_BYTES", "1000")
    get_settings.cache_clear()
    json_limit = 1024 * 1024
    for service, app in _apps(tmp_path).items():
        with local_client(app) as client:
            big = client.post("/api/v1/nope", content=b"x" * (json_limit + 1))
            assert big.status_code == 413 and f"limit of {json_limit} bytes" in big.json()["detail"], service
    with local_client(_apps(tmp_path)["ingest"]) as client:
        big_json = client.post(
            "/api/v1/scenes", content=b"{" + b" " * json_limit + b"}", headers={"content-type": "application/json"}
        )
        assert big_json.status_code == 413 and f"limit of {json_limit} bytes" in big_json.json()["detail"]
        big_upload = client.post("/api/v1/scenes", files={"file": ("a.tif", b"x" * (70 * 1024))})
        assert big_upload.status_code == 413 and "upload exceeds the limit of 1000 bytes" in big_upload.json()["detail"]
        assert big_upload.headers["x-content-type-options"] == "nosniff"
        small = client.post("/api/v1/scenes", files={"file": ("a.tif", b"x" * 2000)})
        assert small.status_code == 413 and "exceeds the limit of 1000 bytes" in small.json()["detail"]  # while stored
