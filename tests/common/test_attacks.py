"""The attacks of issue 30, tried against secure mode (API keys of every role, IAP with a test key pair), kept.

Each case of :data:`ATTACKS` is one row of the issue's table: what an attacker sent and what must come
back. They run in-process (TestClient) where the hole was in HTTP handling; what depends on the
transport (bodies sent chunked or never sent, the Host header) runs against real uvicorn processes in
the tests after the table. Limits are made small through settings, so no test sends a big body.
"""

from __future__ import annotations

import io
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import Affine
from roadseg.auth import IAP_HEADER, IAP_ISSUER, IapVerifier, hash_key
from roadseg.config import get_settings
from roadseg.errors import Unauthenticated
from utils.clients import local_client
from utils.iap import AUDIENCE, TestIssuer
from utils.processes import Service

ROLES = ("viewer", "labeler", "operator", "admin")
KEYS = {role: f"rsk_attack-{role}-key" for role in ROLES}
#: Strings that name where things live on the server: none may appear in an error body.
INTERNALS = ("file://", "/tmp", "roadseg-vectors-", "redis://", "var/storage")
ROAD_GEOJSON = json.dumps(
    {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}
        ],
    }
).encode()


def key_lines(revoked: str = "") -> str:
    return ";".join(f"{r} {r} {hash_key(k)}" + (" revoked" if r == revoked else "") for r, k in KEYS.items())


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_no_internals(response: Any) -> None:
    for text in INTERNALS:
        assert text not in response.text, (text, response.text)


@pytest.fixture
def secure(settings_env, monkeypatch, tmp_path) -> Iterator[dict[str, Any]]:
    """ROADSEG_AUTH_MODE=required, a key per role (the viewer's revoked copy aside), IAP with a test issuer."""
    issuer = TestIssuer(tmp_path)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    env = issuer.env({"@example.com": "viewer"}) | {
        "ROADSEG_API_KEYS": key_lines() + f";gone viewer {hash_key('rsk_gone')} revoked",
        "ROADSEG_INGEST_FILE_ROOTS": json.dumps([str(allowed)]),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield {"issuer": issuer, "allowed": allowed, "tmp": tmp_path, "storage": tmp_path / "storage"}
    get_settings.cache_clear()


def gateway_app() -> Any:
    from roadseg.gateway.api import create_app
    from roadseg.inference.predictor import EmbeddedPredictor
    from utils.gateway import dark_model

    return create_app(predictor=EmbeddedPredictor(dark_model() / "1"))


def labeler_app() -> Any:
    from roadseg.label_service import create_app

    return create_app()


def ingest_app() -> Any:
    from roadseg.ingest.api import create_app

    return create_app()


@pytest.fixture
def outbound(monkeypatch) -> list[Any]:
    """Every connection this process tries to a non-loopback address (refused, recorded)."""
    attempts: list[Any] = []
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(address, tuple) and host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError("test: no traffic leaves this machine")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


# ----------------------------------------------------------------------------- 1. vectors_uri and vectors


def label_run(client: Any, **form: str) -> Any:
    return client.post("/api/v1/label-runs", data={"scene_id": "s1", **form}, headers=bearer("operator"))


def attack_vectors_uri_outside_the_roots(env: dict[str, Any], outbound: list[Any]) -> None:
    with local_client(labeler_app()) as client:
        for uri in ("file:///etc/passwd", "file:///etc/shadow", "file:///no/such/file.gpkg"):
            r = label_run(client, vectors_uri=uri)
            # The same 400 whether the file exists, is unreadable or is missing: no existence oracle.
            assert r.status_code == 400 and "not under a folder this service may read" in r.json()["detail"], r.text
            assert str(env["allowed"]) not in r.text  # the allowed roots stay private
    assert not (env["storage"] / "labels").exists()  # nothing was copied


def attack_vectors_uri_other_bucket_and_metadata_server(env: dict[str, Any], outbound: list[Any]) -> None:
    with local_client(labeler_app()) as client:
        other = label_run(client, vectors_uri="gs://any-bucket/roads.geojson")
        assert other.status_code == 400 and "not an allowed bucket" in other.json()["detail"]
        for uri in ("http://169.254.169.254/computeMetadata/v1/", "https://example.com/r.geojson", "/etc/passwd"):
            r = label_run(client, vectors_uri=uri)
            assert r.status_code == 400 and "unsupported vectors_uri" in r.json()["detail"], r.text
    assert outbound == []  # refused by policy: no connection was even tried


def attack_vectors_sqlite_tables_and_sql_where(env: dict[str, Any], outbound: list[Any]) -> None:
    database = env["allowed"] / "notes.sqlite"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE secret_payroll (name TEXT)")
    with local_client(labeler_app()) as client:
        r = label_run(client, vectors_uri=database.as_uri(), options=json.dumps({"layer": "x"}))
        assert r.status_code == 400 and "not a vector format accepted here" in r.json()["detail"]
        assert "secret_payroll" not in r.text
        vectors = {"vectors": ("roads.geojson", ROAD_GEOJSON)}
        sql = json.dumps({"where": "1=1 UNION SELECT name FROM sqlite_master"})
        r = client.post(
            "/api/v1/label-runs", data={"scene_id": "s1", "options": sql}, files=vectors, headers=bearer("operator")
        )
        assert r.status_code == 400 and "not accepted over HTTP" in r.json()["detail"]
        bad_filter = json.dumps({"attribute_filter": {"highway": "primary' OR '1'='1"}})
        r = client.post(
            "/api/v1/label-runs",
            data={"scene_id": "s1", "options": bad_filter},
            files=vectors,
            headers=bearer("operator"),
        )
        assert r.status_code == 400 and "attribute_filter must map" in r.json()["detail"]


# ----------------------------------------------------------------------------- 2. bodies (in-process part)


def attack_json_cap_dodged_by_headers(env: dict[str, Any], outbound: list[Any], monkeypatch: Any) -> None:
    monkeypatch.setenv("ROADSEG_MAX_JSON_BYTES", str(64 * 1024))
    get_settings.cache_clear()
    body = b'{"start": [1, 2], "end": [3, 4], "pad": "' + b"x" * (1024 * 1024) + b'"}'
    with local_client(gateway_app()) as client:
        url = "/api/v1/predictions/20260101-000000000000/route"
        for content_type in ("application/json", "Application/JSON", "application/x+json", None):
            headers = bearer("viewer") | ({"Content-Type": content_type} if content_type else {})
            declared = client.post(url, content=body, headers=headers)
            assert declared.status_code == 413, (content_type, declared.text[:200])
            chunked = client.post(
                url, content=iter([body[i : i + 8192] for i in range(0, len(body), 8192)]), headers=headers
            )
            assert chunked.status_code == 413 and "limit of 65536 bytes" in chunked.text, content_type
        # A multipart body to a route that takes no upload has the JSON cap too.
        multipart = client.post(url, files={"file": ("a.bin", b"x" * 100_000)}, headers=bearer("viewer"))
        assert multipart.status_code == 413


def attack_validation_error_echoes_the_body(env: dict[str, Any], outbound: list[Any]) -> None:
    marker = "A" * 40_000
    with local_client(gateway_app()) as client:
        url = "/api/v1/predictions/20260101-000000000000/route"
        r = client.post(url, content=json.dumps({"start": marker}).encode(), headers=bearer("viewer"))
        assert r.status_code == 422 and "AAAA" not in r.text and len(r.content) < 2000, r.text[:300]
        assert r.json()["detail"].startswith("invalid request: ")


# ----------------------------------------------------------------------------- 3. the three 500s


def attack_geotiff_off_the_globe(env: dict[str, Any], outbound: list[Any]) -> None:
    path = env["tmp"] / "off-globe.tif"
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 3, "dtype": "uint8", "crs": "EPSG:4326"}
    with rasterio.open(path, "w", transform=Affine(10, 0, -500, 0, -10, 500), **profile) as dst:
        dst.write(np.zeros((3, 64, 64), dtype=np.uint8))
    with local_client(gateway_app()) as client:
        r = client.post("/api/v1/predictions", files={"file": ("off.tif", path.read_bytes())}, headers=bearer("viewer"))
    assert r.status_code == 400 and "georeferencing is impossible" in r.json()["detail"], r.text
    assert not list((env["storage"] / "predictions").glob("*/*")) if (env["storage"] / "predictions").exists() else 1


def attack_dataset_negative_seed(env: dict[str, Any], outbound: list[Any]) -> None:
    with local_client(labeler_app()) as client:
        r = client.post("/api/v1/datasets", json={"runs": ["r"], "name": "d", "seed": -1}, headers=bearer("operator"))
    assert r.status_code == 422 and "seed" in r.json()["detail"], r.text


# ----------------------------------------------------------------------------- 4. budgets


def attack_viewer_pixel_bomb(env: dict[str, Any], outbound: list[Any], monkeypatch: Any) -> None:
    monkeypatch.setenv("ROADSEG_PREDICT_PIXELS_PER_REQUEST", json.dumps({"viewer": 500 * 500}))
    get_settings.cache_clear()
    bomb = png(600, 600, mode="1")  # a few hundred bytes, 360 000 pixels
    with local_client(gateway_app()) as client:
        r = client.post("/api/v1/predictions", files={"file": ("b.png", bomb)}, headers=bearer("viewer"))
        assert r.status_code == 413 and "exceeds the limit of 250000 pixels" in r.json()["detail"], r.text
        r = client.post("/api/v1/predictions", files={"file": ("b.png", bomb)}, headers=bearer("operator"))
        assert r.status_code == 201, r.text  # the operator's budget is a scene's
    assert not list((env["storage"] / "predictions").glob("*/input/b.png")) or r.status_code == 201


def attack_viewer_fills_the_queue(env: dict[str, Any], outbound: list[Any], monkeypatch: Any) -> None:
    """No predict worker runs: what is queued stays queued, and counts."""
    monkeypatch.setenv("ROADSEG_QUEUED_PREDICT_PIXELS", json.dumps({"viewer": 3 * 300 * 300 - 1}))
    get_settings.cache_clear()
    image = png(300, 300)
    with local_client(gateway_app()) as client:
        # Above the in-request budget (default 1024^2 px), so queued: a 2047^2 PNG is no longer predicted inline.
        big = client.post(
            "/api/v1/predictions",
            files={"file": ("big.png", png(2047, 2047, mode="1"))},
            headers={IAP_HEADER: env["issuer"].assertion("bo@example.com")},
        )
        assert big.status_code == 202, big.text
        monkeypatch.setenv("ROADSEG_SYNC_PREDICT_MAX_PIXELS", "1")
        get_settings.cache_clear()
        answers = [
            client.post("/api/v1/predictions", files={"file": ("q.png", image)}, headers=bearer("viewer"))
            for _ in range(4)
        ]
        assert [a.status_code for a in answers] == [202, 202, 202, 429], [a.text for a in answers]
        assert "budget" in answers[-1].json()["detail"] and answers[-1].headers["retry-after"]
        # Another identity has its own budget.
        other = client.post("/api/v1/predictions", files={"file": ("q.png", image)}, headers=bearer("labeler"))
        assert other.status_code == 202


# ----------------------------------------------------------------------------- 6. internals in error bodies


def attack_error_bodies_name_no_internals(env: dict[str, Any], outbound: list[Any]) -> None:
    with local_client(labeler_app()) as client:
        missing_scene = client.post(
            "/api/v1/label-runs",
            data={"scene_id": "nope"},
            files={"vectors": ("roads.geojson", ROAD_GEOJSON)},
            headers=bearer("operator"),
        )
        assert missing_scene.status_code == 404 and "'nope'" in missing_scene.json()["detail"]
        broken = client.post(
            "/api/v1/label-runs",
            data={"scene_id": "nope"},
            files={"vectors": ("roads.geojson", b"garbage")},
            headers=bearer("operator"),
        )
        assert broken.status_code == 400 and "roads.geojson: not a vector format" in broken.json()["detail"]
        revoked = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer rsk_gone"})
        assert revoked.status_code == 401 and "gone" not in revoked.json()["detail"]
        for r in (missing_scene, broken, revoked):
            assert_no_internals(r)
    with local_client(ingest_app()) as client:
        outside = client.post("/api/v1/scenes", json={"uri": "file:///etc/hosts"}, headers=bearer("operator"))
        assert outside.status_code == 400 and str(env["allowed"]) not in outside.text
    # The broker's address in the 503 of a queue that is down: tests/common/test_http_api.py (a fresh process
    # whose Celery app was configured with a dead broker) checks that it is gone.


# ----------------------------------------------------------------------------- 7. sessions


def attack_copied_cookie_outlives_logout(env: dict[str, Any], outbound: list[Any]) -> None:
    from roadseg.auth import SESSION_COOKIE

    with local_client(labeler_app(), follow_redirects=False) as client:
        signed_in = client.post("/login", data={"key": KEYS["labeler"], "next": "/"})
        assert signed_in.status_code == 303
        session = client.cookies[SESSION_COOKIE]
        assert session != KEYS["labeler"] and KEYS["labeler"] not in signed_in.headers["set-cookie"]
        assert client.get("/api/v1/auth/me").json()["via"] == "session"
        client.cookies.clear()
        as_key = client.get("/api/v1/auth/me", cookies={SESSION_COOKIE: KEYS["labeler"]})
        assert as_key.status_code == 401  # the key itself is not a session
        copied = {SESSION_COOKIE: session}
        assert client.get("/api/v1/auth/me", cookies=copied).status_code == 200
        assert client.post("/logout", cookies=copied).status_code == 303
        assert client.get("/api/v1/auth/me", cookies=copied).status_code == 401  # ended on the server
        # Revoking the key ends its sessions too.
        again = client.post("/login", data={"key": KEYS["viewer"], "next": "/"}).cookies[SESSION_COOKIE]
        client.cookies.clear()
        assert client.get("/api/v1/auth/me", cookies={SESSION_COOKIE: again}).status_code == 200
    import os

    os.environ["ROADSEG_API_KEYS"] = key_lines(revoked="viewer")
    get_settings.cache_clear()
    with local_client(labeler_app()) as client:
        assert client.get("/api/v1/auth/me", cookies={SESSION_COOKIE: again}).status_code == 401


# ----------------------------------------------------------------------------- what held: forged assertions


def attack_forged_iap_assertions(env: dict[str, Any], outbound: list[Any]) -> None:
    claims = {
        "iss": IAP_ISSUER,
        "aud": AUDIENCE,
        "email": "bo@example.com",
        "iat": int(time.time()),
        "exp": int(time.time()) + 600,
    }
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
    hs256 = jwt.encode(claims, "k1", algorithm="HS256", headers={"kid": "k1"})
    with local_client(labeler_app()) as client:
        for token in (unsigned, hs256, env["issuer"].assertion("bo@example.com", aud="/other")):
            assert client.get("/api/v1/auth/me", headers={IAP_HEADER: token}).status_code == 401
        for query in ("?key=" + KEYS["admin"], "?api_key=" + KEYS["admin"]):
            assert client.get("/api/v1/auth/keys" + query).status_code == 401


ATTACKS: dict[str, Callable[..., None]] = {
    "1 vectors_uri outside the allowed roots (and no existence oracle)": attack_vectors_uri_outside_the_roots,
    "1 vectors_uri in another bucket or on the metadata server": attack_vectors_uri_other_bucket_and_metadata_server,
    "1 SQLite table names and SQL in options.where": attack_vectors_sqlite_tables_and_sql_where,
    "2 JSON cap dodged by chunking and content types": attack_json_cap_dodged_by_headers,
    "2 a 422 echoes the body": attack_validation_error_echoes_the_body,
    "3 EPSG:4326 GeoTIFF off the globe": attack_geotiff_off_the_globe,
    "3 dataset with seed -1": attack_dataset_negative_seed,
    "4 a viewer's 1-bit pixel bomb": attack_viewer_pixel_bomb,
    "4 a viewer fills the prediction queue": attack_viewer_fills_the_queue,
    "6 internals in error bodies": attack_error_bodies_name_no_internals,
    "7 a copied sign-in cookie outlives logout": attack_copied_cookie_outlives_logout,
    "held: forged IAP assertions and query-string keys": attack_forged_iap_assertions,
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_refused(name, secure, outbound, monkeypatch):
    attack = ATTACKS[name]
    takes = attack.__code__.co_varnames[: attack.__code__.co_argcount]
    attack(secure, outbound, *([monkeypatch] if "monkeypatch" in takes else []))


# ----------------------------------------------------------------------------- 8. IAP key refetch


def test_unknown_iap_key_ids_refetch_the_keys_at_most_once_per_interval(tmp_path):
    """Unauthenticated traffic with made-up ``kid``s must not make the service fetch IAP's keys each time."""
    issuer = TestIssuer(tmp_path)
    document = issuer.keys_file.read_bytes()
    fetches: list[float] = []

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            fetches.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/keys"
        verifier = IapVerifier(AUDIENCE, None, refetch_s=1.0, keys_url=url)
        assert verifier.verify(issuer.assertion("bo@example.com")) == "bo@example.com"
        unknown = [
            jwt.encode({"email": "x"}, issuer.private, algorithm="ES256", headers={"kid": f"k{i}"})
            for i in range(2, 40)
        ]
        for token in unknown:
            with pytest.raises(Unauthenticated, match="unknown key"):
                verifier.verify(token)
        assert len(fetches) == 1  # the first load only: every unknown kid within the interval is a plain 401
        time.sleep(1.1)
        for token in unknown[:5]:
            with pytest.raises(Unauthenticated):
                verifier.verify(token)
        assert len(fetches) == 2  # one refetch once the interval passed (IAP may have rotated its keys)
    finally:
        server.shutdown()


# ----------------------------------------------------------------------------- transport: real processes


def raw_request(port: int, head: str, body_part: bytes = b"", timeout: float = 10.0) -> tuple[int, bytes]:
    """Send a request head and part of its body, then read the answer without sending the rest."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(head.encode() + b"\r\n" + body_part)
        answer = b""
        while not _complete(answer):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer


def _complete(answer: bytes) -> bool:
    """Whether the head and the ``Content-Length`` bytes of body of an answer have arrived."""
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return len(body) >= int(lengths[0]) if lengths else True


@pytest.fixture(scope="module")
def secure_ingest(tmp_path_factory, redis_url) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("secure-ingest")
    (root / "tmp").mkdir()
    env = {
        "ROADSEG_AUTH_MODE": "required",
        "ROADSEG_API_KEYS": key_lines(),
        "ROADSEG_STORAGE_URL": (root / "storage").as_uri(),
        "ROADSEG_REDIS_URL": redis_url,
        "ROADSEG_MAX_JSON_BYTES": str(64 * 1024),
        "TMPDIR": str(root / "tmp"),  # where a multipart upload would be spooled
    }
    service = Service("ingest", env, root / "ingest.log")
    try:
        service.wait()
        yield {"service": service, "tmp": root / "tmp"}
    finally:
        service.stop()


def test_an_unknown_caller_gets_401_before_sending_the_body(secure_ingest):
    """The answer arrives while the client has sent 64 KiB of a body that would be 1 MiB or 400 MB."""
    port, spool = secure_ingest["service"].port, secure_ingest["tmp"]
    chunked = (
        "POST /api/v1/scenes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n"
    )
    status, answer = raw_request(port, chunked, b"10000\r\n" + b" " * 0x10000 + b"\r\n")
    assert status == 401 and b"authentication required" in answer
    multipart = (
        "POST /api/v1/scenes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 400000000\r\n"
    )
    status, answer = raw_request(
        port, multipart, b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.tif"\r\n\r\n' + b"x" * 65536
    )
    assert status == 401
    assert list(spool.iterdir()) == []  # nothing was spooled to disk


def test_a_known_caller_is_cut_off_at_the_limit_on_the_bytes_received(secure_ingest):
    """Chunked, so no length is declared: the 413 comes once 64 KiB have arrived, not after the whole body."""
    port = secure_ingest["service"].port
    head = (
        f"POST /api/v1/scenes HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEYS['operator']}\r\n"
        "Content-Type: Application/JSON\r\nTransfer-Encoding: chunked\r\n"
    )
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    status, answer = raw_request(port, head, chunk * 2)
    assert status == 413 and b"limit of 65536 bytes" in answer, answer


@pytest.fixture(scope="module")
def open_local_ingest(tmp_path_factory, redis_url) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("open-local-ingest")
    env = {
        "ROADSEG_AUTH_MODE": "open-local",
        "ROADSEG_STORAGE_URL": (root / "storage").as_uri(),
        "ROADSEG_REDIS_URL": redis_url,
    }
    service = Service("ingest", env, root / "ingest.log")
    try:
        service.wait()
        yield service
    finally:
        service.stop()


@pytest.mark.parametrize("host", ["rebind.evil.example:8000", "rebind.evil.example", "127.0.0.1.evil.example"])
def test_open_local_mode_refuses_a_rebound_host_name(open_local_ingest, host):
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 must not act as the local admin."""
    import httpx

    url = open_local_ingest.url
    rebound = {"Host": host, "Sec-Fetch-Site": "same-origin"}
    for method, path in (("GET", "/api/v1/scenes"), ("GET", "/api/v1/auth/keys"), ("POST", "/api/v1/scenes")):
        files = {"file": ("a.png", png(8, 8))} if method == "POST" else None
        r = httpx.request(method, url + path, headers=rebound, files=files, timeout=30)
        assert r.status_code == 400 and "Host header" in r.json()["detail"], (method, path, r.text)
    for name in (f"127.0.0.1:{open_local_ingest.port}", f"localhost:{open_local_ingest.port}"):
        assert httpx.get(url + "/api/v1/auth/me", headers={"Host": name}, timeout=30).status_code == 200
    assert httpx.get(url + "/healthz", headers={"Host": host}, timeout=30).status_code == 200  # probes name the pod


def test_the_predict_command_refuses_an_image_off_the_globe_without_a_traceback(tmp_path, capsys):
    from roadseg.cli import main

    path = tmp_path / "off-globe.tif"
    profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 3, "dtype": "uint8", "crs": "EPSG:4326"}
    with rasterio.open(path, "w", transform=Affine(10, 0, -500, 0, -10, 500), **profile) as dst:
        dst.write(np.zeros((3, 32, 32), dtype=np.uint8))
    from utils.gateway import dark_model

    code = main(["predict", str(path), "--out", str(tmp_path / "out"), "--model", str(dark_model() / "1")])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err + captured.out
    assert "georeferencing is impossible" in captured.err + captured.out
    assert not list(Path(tmp_path / "out").glob("*.tif")) if (tmp_path / "out").exists() else True
