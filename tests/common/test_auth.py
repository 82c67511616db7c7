"""Who may do what (roadseg.auth), on the real apps of all three services.

The endpoint x role matrix is derived from the apps' own route tables, so a route added without a
role (or with another one than the table below expects) fails here. IAP assertions are signed with
a key made in the test, published as a JWK set file, exactly as IAP's keys are published.
"""

from __future__ import annotations

import re
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.routing import APIRoute
from roadseg.auth import IAP_HEADER, IAP_ISSUER, hash_key
from roadseg.config import get_settings
from utils.clients import local_client, service_apps
from utils.iap import AUDIENCE, TestIssuer

KEYS = {role: f"rsk_test-{role}-key" for role in ("viewer", "labeler", "operator", "admin")}
ROLES = ("viewer", "labeler", "operator", "admin")

#: The role each route needs, by path (the issue's table): checked against every route of every app.
EXPECTED = [
    (r"^/api/v1/auth/me$", "viewer"),
    (r"^/api/v1/auth/keys$", "admin"),
    (r"^/api/v1/predictions/scenes$", "operator"),  # a whole scene on the workers
    (r"^/api/v1/(predictions(?!/scenes$)|model)", "viewer"),
    (r"^/$|^/ui/|^/map$", "viewer"),  # gateway pages; the labeler's "/" is listed under its app below
    (r"^/api/v1/(scenes|datasets)", "operator"),
    (r"^/api/v1/label-runs$", "operator", "POST"),  # start a label run
    (r"^/api/v1/label-runs/", "labeler", "GET"),  # a run and its review decisions
    (r"^/api/v1/stac/", "operator"),  # the gateway's STAC collection of all scenes
    (r"^/runs", "labeler"),
    (r"^/(docs|redoc|openapi.json)$", "viewer"),
    # Missing roads (labeler service): anyone signed in sees, a labeler decides, an operator starts a job.
    (r"^/(api/v1/)?missing", "viewer", "GET"),
    (r"^/(api/v1/)?missing/.+/(decision|bulk-reject)$", "labeler", "POST"),
    (r"^/api/v1/missing$", "operator", "POST"),
]
OPEN = {"/healthz", "/login", "/logout"}


def key_lines(revoked: str = "") -> str:
    return ";".join(
        f"{role} {role} {hash_key(key)}" + (" revoked" if role == revoked else "") for role, key in KEYS.items()
    )


@pytest.fixture
def required(settings_env, monkeypatch, tmp_path):
    """Secure-by-default settings with one API key per role and IAP trusted with a test issuer."""
    issuer = TestIssuer(tmp_path)
    env = issuer.env({"ana@example.com": "labeler", "@example.com": "viewer"}) | {"ROADSEG_API_KEYS": key_lines()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield issuer
    get_settings.cache_clear()


def apps():
    from roadseg.inference.predictor import EmbeddedPredictor
    from utils.gateway import dark_model

    return service_apps(predictor=EmbeddedPredictor(dark_model() / "1"))


def api_routes(app) -> list[APIRoute]:
    """Every APIRoute of an app, also those of included routers (FastAPI >= 0.130 wraps them)."""
    found = []
    for route in app.routes:
        router = getattr(route, "original_router", None)
        found += [r for r in (router.routes if router else [route]) if isinstance(r, APIRoute)]
    return found


def expected_role(service: str, path: str, method: str) -> str:
    """The role a route needs, from the table (an entry with a method holds for that method only)."""
    if service == "labeler" and path == "/":
        return "labeler"  # the labeler's front page lists label runs to review
    roles = [role for pattern, role, *only in EXPECTED if re.search(pattern, path) and method in (only or [method])]
    assert len(roles) == 1, f"{service} {path}: no expected role in the table (or several): {roles}"
    return roles[0]


def test_every_route_needs_its_role_and_only_health_docs_and_static_are_open(required):
    for service, app in apps().items():
        with local_client(app) as client:
            routes = [r for r in api_routes(app) if r.path not in OPEN]
            assert len(routes) >= 4, service
            for route in routes:
                path = re.sub(r"\{[^}]+\}", "x", route.path)
                method = sorted(route.methods)[0]
                needed = expected_role(service, route.path, method)
                anonymous = client.request(method, path)
                assert anonymous.status_code == 401, (service, method, path, anonymous.text)
                assert anonymous.headers["www-authenticate"].startswith("Bearer")
                for role in ROLES:
                    r = client.request(method, path, headers={"Authorization": f"Bearer {KEYS[role]}"})
                    if ROLES.index(role) < ROLES.index(needed):
                        assert r.status_code == 403, (service, method, path, role, r.text)
                        assert f"needs the {needed} role" in r.json()["detail"]
                    else:
                        assert r.status_code not in (401, 403), (service, method, path, role, r.text)
            assert client.get("/healthz").status_code == 200
            if service == "gateway":
                assert client.get("/vendor/htmx.min.js").status_code == 200  # static files stay open
            assert client.get("/favicon.ico").status_code == 200  # as are the icon browsers ask for


def test_api_keys_unknown_revoked_and_edited_without_restart(required, monkeypatch, tmp_path):
    from roadseg.gateway.api import create_app
    from roadseg.inference.predictor import EmbeddedPredictor
    from utils.gateway import dark_model

    keyfile = tmp_path / "keys.txt"
    keyfile.write_text(f"# comment\nscript operator {hash_key('rsk_script')}\n")
    monkeypatch.setenv("ROADSEG_API_KEYS", key_lines(revoked="viewer"))
    monkeypatch.setenv("ROADSEG_API_KEYS_FILE", str(keyfile))
    get_settings.cache_clear()
    with local_client(create_app(predictor=EmbeddedPredictor(dark_model() / "1"))) as client:

        def me(key: str):
            return client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {key}"})

        assert me("rsk_script").json() == {"name": "script", "role": "operator", "via": "api-key"}
        assert me("rsk_nope").status_code == 401 and me("rsk_nope").json()["detail"] == "unknown API key"
        revoked = me(KEYS["viewer"])
        assert revoked.status_code == 401 and revoked.json()["detail"] == "this API key was revoked"  # no name
        r = client.get("/api/v1/auth/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert r.status_code == 401 and "Bearer" in r.json()["detail"]
        # Revoking in the file (as `roadseg keys revoke` does) takes effect on the next request.
        keyfile.write_text(f"script operator {hash_key('rsk_script')} revoked\n")
        assert me("rsk_script").status_code == 401
        listing = client.get("/api/v1/auth/keys", headers={"Authorization": f"Bearer {KEYS['admin']}"}).json()
        assert {"name": "script", "role": "operator", "revoked": True} in listing
        assert all(set(entry) == {"name", "role", "revoked"} for entry in listing)  # never a hash


def test_iap_assertions_are_verified_and_mapped_to_roles(required):
    from roadseg.label_service import create_app

    issuer = required
    with local_client(create_app()) as client:

        def me(token: str):
            return client.get("/api/v1/auth/me", headers={IAP_HEADER: token})

        assert me(issuer.assertion()).json() == {"name": "ana@example.com", "role": "labeler", "via": "iap"}
        assert me(issuer.assertion("bo@example.com")).json()["role"] == "viewer"  # by domain
        nobody = me(issuer.assertion("eve@elsewhere.org"))
        assert nobody.status_code == 403 and "eve@elsewhere.org has no role" in nobody.json()["detail"]
        forged = jwt.encode(
            {"iss": IAP_ISSUER, "aud": AUDIENCE, "email": "ana@example.com", "iat": 1, "exp": 2**31},
            ec.generate_private_key(ec.SECP256R1()),
            algorithm="ES256",
            headers={"kid": "k1"},
        )
        refusals = {
            "forged": me(forged),
            "expired": me(issuer.assertion(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
            "audience": me(issuer.assertion(aud="/projects/999/global/backendServices/1")),
            "issuer": me(issuer.assertion(iss="https://example.com")),
            "garbage": me("not-a-jwt"),
            "other key id": me(jwt.encode({"email": "x"}, issuer.private, algorithm="ES256", headers={"kid": "k9"})),
        }
        for name, r in refusals.items():
            assert r.status_code == 401, (name, r.text)
        assert "Signature verification failed" in refusals["forged"].json()["detail"]
        assert "expired" in refusals["expired"].json()["detail"]
        assert "audience" in refusals["audience"].json()["detail"].lower()
        # A labeler (by IAP) may review but not start label runs.
        assert client.post("/api/v1/label-runs", headers={IAP_HEADER: issuer.assertion()}).status_code == 403


def test_the_iap_header_is_not_trusted_unless_an_audience_is_configured(required, monkeypatch):
    from roadseg.ingest.api import create_app

    monkeypatch.delenv("ROADSEG_IAP_AUDIENCE")
    get_settings.cache_clear()
    with local_client(create_app()) as client:
        r = client.get("/api/v1/scenes", headers={IAP_HEADER: required.assertion("ana@example.com")})
        assert r.status_code == 401


def test_open_local_mode_answers_this_machine_only(settings_env, monkeypatch):
    from fastapi.testclient import TestClient
    from roadseg.ingest.api import create_app

    monkeypatch.setenv("ROADSEG_AUTH_MODE", "open-local")
    get_settings.cache_clear()
    app = create_app()
    with local_client(app) as client:
        assert client.get("/api/v1/auth/me").json() == {"name": "local", "role": "admin", "via": "open-local"}
    with TestClient(app, client=("192.0.2.7", 40000), base_url="http://localhost") as remote:
        r = remote.get("/api/v1/scenes")
        assert r.status_code == 403 and "open local mode" in r.json()["detail"]
        assert remote.get("/healthz").status_code == 200


def test_open_local_mode_refuses_to_listen_on_other_addresses(settings_env, monkeypatch, capsys):
    """Both ways to start a service: `roadseg serve` and uvicorn (as make up, compose and k8s run them)."""
    import os
    import subprocess
    import sys

    from roadseg.cli import main
    from utils.paths import REPO
    from utils.processes import free_port

    monkeypatch.setenv("ROADSEG_AUTH_MODE", "open-local")
    get_settings.cache_clear()
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "listens on 127.0.0.1 only, not 0.0.0.0" in capsys.readouterr().err
    app = ["--app-dir", str(REPO / "services" / "ingest"), "main:app"]
    argv = [sys.executable, "-m", "uvicorn", *app, "--host", "0.0.0.0", "--port", str(free_port())]
    done = subprocess.run(argv, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "listens on 127.0.0.1 only, not 0.0.0.0" in done.stderr


def test_keys_command_stores_hashes_and_revokes(tmp_path, capsys):
    from roadseg.auth import parse_keys
    from roadseg.cli import main

    keyfile = tmp_path / "keys.txt"
    assert main(["keys", "create", "ci", "--role", "operator", "--file", str(keyfile)]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("rsk_") and key not in keyfile.read_text()
    (entry,) = parse_keys(keyfile.read_text(), "keys")
    assert entry.name == "ci" and entry.role.name == "operator" and entry.sha256 == hash_key(key)
    assert main(["keys", "create", "ci", "--role", "viewer", "--file", str(keyfile)]) == 2
    assert main(["keys", "revoke", "ci", "--file", str(keyfile)]) == 0
    assert parse_keys(keyfile.read_text(), "keys")[0].revoked
    assert main(["keys", "list", "--file", str(keyfile)]) == 0
    assert "ci\toperator\trevoked" in capsys.readouterr().out
    assert oct(keyfile.stat().st_mode & 0o777) == "0o600"


def test_bad_key_settings_stop_the_service(settings_env, monkeypatch):
    from roadseg.config import InvalidSettings
    from roadseg.ingest.api import create_app

    monkeypatch.setenv("ROADSEG_AUTH_MODE", "required")
    monkeypatch.setenv("ROADSEG_API_KEYS", "ci operator not-a-hash")
    get_settings.cache_clear()
    with pytest.raises(InvalidSettings, match="64-digit sha256"):
        create_app()
    monkeypatch.setenv("ROADSEG_IAP_ROLES", '{"a@b.c": "root"}')
    get_settings.cache_clear()
    with pytest.raises(InvalidSettings, match="role 'root'"):
        create_app()


def test_changes_by_a_browser_identity_must_come_from_the_same_site(required):
    """CSRF: IAP's cookie rides along with any form another site posts; such a post is refused."""
    from roadseg.gateway.api import create_app
    from roadseg.inference.predictor import EmbeddedPredictor
    from utils.gateway import dark_model

    iap = {IAP_HEADER: required.assertion("bo@example.com")}
    with local_client(create_app(predictor=EmbeddedPredictor(dark_model() / "1"))) as client:
        example = "/api/v1/predictions/example"
        for hostile in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
            r = client.post(example, headers=iap | hostile)
            assert r.status_code == 403 and "cross-site POST refused" in r.json()["detail"], hostile
        assert client.get("/api/v1/model", headers=iap | {"Sec-Fetch-Site": "cross-site"}).status_code == 200
        same = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
        assert client.post(example, headers=iap | same).status_code == 201
        assert client.post(example, headers=iap | {"Origin": "http://localhost"}).status_code == 201
        bearer = {"Authorization": f"Bearer {KEYS['viewer']}", "Sec-Fetch-Site": "cross-site"}
        assert client.post(example, headers=bearer).status_code == 201  # a script's key, not a cookie


def test_each_identity_has_its_own_rate_limit(required, monkeypatch):
    import uuid

    from roadseg.ingest.api import create_app

    names = [f"script-{uuid.uuid4().hex[:8]}" for _ in range(2)]  # counts live in Redis: fresh names
    extra = ";".join(f"{name} viewer {hash_key('rsk_' + name)}" for name in names)
    monkeypatch.setenv("ROADSEG_API_KEYS", f"{key_lines()};{extra}")
    monkeypatch.setenv("ROADSEG_RATE_LIMIT_PER_MINUTE", "3")
    get_settings.cache_clear()
    with local_client(create_app()) as client:

        def me(name: str):
            return client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer rsk_{name}"})

        started = time.time()
        answers = [me(names[0]) for _ in range(4)]
        if int(started // 60) != int(time.time() // 60):
            pytest.skip("a minute boundary fell between the requests and restarted the count; run it again")
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert 1 <= int(answers[-1].headers["retry-after"]) <= 60
        assert f"{names[0]} sent more than 3 requests this minute" in answers[-1].json()["detail"]
        assert me(names[1]).status_code == 200  # another identity, its own count
        assert client.get("/healthz").status_code == 200  # never limited


def test_a_browser_signs_in_with_an_api_key_and_keeps_it_in_an_httponly_cookie(required):
    """Without IAP: pages redirect to /login; the key becomes a SameSite=Strict cookie; posts stay same-site."""
    from roadseg.gateway.api import create_app
    from roadseg.inference.predictor import EmbeddedPredictor
    from utils.gateway import dark_model

    html = {"Accept": "text/html,application/xhtml+xml"}
    with local_client(create_app(predictor=EmbeddedPredictor(dark_model() / "1")), follow_redirects=False) as client:
        page = client.get("/", headers=html)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/"
        assert client.get("/api/v1/model", headers=html).status_code == 401  # API clients get no redirect
        wrong = client.post("/login", data={"key": "rsk_nope", "next": "/"})
        assert wrong.status_code == 401 and "unknown API key: try again" in wrong.text
        form = client.get("/login", params={"next": '/x"><script>alert(1)</script>'})  # the page is autoescaped
        assert form.status_code == 200 and form.headers["content-type"].startswith("text/html")
        assert 'name="next" value="/x&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in form.text
        assert "<script>" not in form.text and 'role="alert"' not in form.text  # no message until a key fails
        signed_in = client.post("/login", data={"key": KEYS["viewer"], "next": "//evil.example/x"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"  # no open redirect
        cookie = signed_in.headers["set-cookie"]
        assert "roadseg_session=" in cookie and KEYS["viewer"] not in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert client.get("/", headers=html).status_code == 200
        assert client.get("/api/v1/auth/me").json() == {"name": "viewer", "role": "viewer", "via": "session"}
        assert client.post("/api/v1/predictions/example").status_code == 201
        evil = client.post("/api/v1/predictions/example", headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403 and "cross-site POST refused" in evil.json()["detail"]
        assert client.post("/logout").status_code == 303
        assert client.get("/api/v1/auth/me").status_code == 401
