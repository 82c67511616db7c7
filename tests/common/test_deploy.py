"""The deployment files, checked without a Docker engine or a cluster (logic in scripts/validate_deploy.py).

Each check is asserted on its own so a failure names the file and the line of thought; a few
tests break a copy on purpose to prove the validators are strict rather than silently lenient.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
from utils.paths import REPO

sys.path.insert(0, str(REPO / "scripts"))

import validate_deploy as vd  # noqa: E402

OVERLAYS = list(vd.KUSTOMIZATIONS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_renders_and_every_object_validates_strictly(overlay):
    objects = vd.render(overlay)
    kinds = {obj["kind"] for obj in objects}
    assert {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "CronJob",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Ingress",
    } <= kinds
    assert vd.k8s_schema_errors(objects) == []
    assert vd.k8s_security_errors(objects) == []
    assert vd.k8s_port_errors(overlay) == []


def test_strict_schema_validation_rejects_unknown_and_mistyped_fields():
    deployment = next(obj for obj in vd.render("base") if obj["kind"] == "Deployment")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    mistyped = copy.deepcopy(deployment)
    mistyped["spec"]["replicas"] = "two"
    assert "livenessprobe" in vd.k8s_schema_errors((typo,))[0]
    assert len(vd.k8s_schema_errors((mistyped,))) == 1


def test_scaled_objects_follow_kedas_own_schema_strictly():
    """KEDA's ScaledObject types (from its CRD, package cloudcoil.models.keda), closed, plus the Redis trigger rules."""
    scaled = next(obj for obj in vd.render("gke") if obj["kind"] == "ScaledObject")
    assert vd.k8s_schema_errors((scaled,)) == []
    broken = {
        "maxReplicaCountt": lambda o: o["spec"].update(maxReplicaCountt=3),  # misspelt: KEDA would ignore it
        "maxReplicaCount": lambda o: o["spec"].update(maxReplicaCount="many"),
        "scaleTargetRef": lambda o: o["spec"].pop("scaleTargetRef"),
        "nmae": lambda o: o["spec"]["scaleTargetRef"].update(nmae="x"),
        "listname": lambda o: o["spec"]["triggers"][0]["metadata"].update(listname="predict"),
        "'redis' was expected": lambda o: o["spec"]["triggers"][0].update(type="redis-streams"),
    }
    for expected, mutate in broken.items():
        wrong = copy.deepcopy(scaled)
        mutate(wrong)
        errors = vd.k8s_schema_errors((wrong,))
        assert len(errors) == 1 and expected in errors[0], (expected, errors)


def test_base_runs_redis_and_gke_uses_memorystore_workload_identity_gpu_and_registry():
    base, gke = vd.render("base"), vd.render("gke")
    assert any(obj["kind"] == "StatefulSet" and obj["metadata"]["name"] == "redis" for obj in base)
    assert not any(obj["metadata"]["name"] == "redis" for obj in gke)
    assert vd.configmap(gke)["ROADSEG_REDIS_URL"] == "redis://MEMORYSTORE_HOST:6379/0"
    account = next(obj for obj in gke if obj["kind"] == "ServiceAccount")
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")
    trainer = next(pod for owner, pod in vd.pod_specs(gke) if owner == "trainer")
    assert trainer["nodeSelector"]["cloud.google.com/gke-accelerator"].startswith("nvidia-")
    assert trainer["initContainers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    images = {c["image"] for _, c in vd.containers(gke) if "/roadseg/" in c["image"]}
    assert images == {f"REGION-docker.pkg.dev/PROJECT_ID/roadseg/{s}:IMAGE_TAG" for s in vd.SERVICES}
    assert all(obj["metadata"]["namespace"] == "roadseg" for obj in gke if obj["kind"] != "Namespace")


def test_gke_scales_workers_on_their_queues_with_keda_and_tf_serving_on_load():
    """0 -> N workers per Celery queue (KEDA), one autoscaler per Deployment, TF Serving on CPU; IAP in front."""
    base, gke = vd.render("base"), vd.render("gke")
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o["spec"] for o in gke if o["kind"] == "ScaledObject"}
    assert set(scaled) == {"ingest-worker", "labeler-worker", "gateway-worker"}
    queues = {name: spec["triggers"][0]["metadata"]["listName"] for name, spec in scaled.items()}
    assert queues == {"ingest-worker": "ingest", "labeler-worker": "label", "gateway-worker": "predict"}
    assert all(spec["minReplicaCount"] == 0 for spec in scaled.values())
    hpas = {o["spec"]["scaleTargetRef"]["name"] for o in gke if o["kind"] == "HorizontalPodAutoscaler"}
    assert hpas == {"gateway", "tfserving"} and "tfserving" in {
        o["spec"]["scaleTargetRef"]["name"] for o in base if o["kind"] == "HorizontalPodAutoscaler"
    }
    assert vd.autoscaling_errors(base) == [] and vd.autoscaling_errors(gke) == []
    wrong = copy.deepcopy(
        next(o for o in gke if o["kind"] == "ScaledObject" and o["metadata"]["name"] == "ingest-worker")
    )
    wrong["spec"]["triggers"][0]["metadata"]["listName"] = "label"
    others = tuple(o for o in gke if o["kind"] != "ScaledObject")
    assert vd.autoscaling_errors((*others, wrong)) == [
        "ScaledObject/ingest-worker: watches 'label', the worker consumes 'ingest'"
    ]
    both = tuple(o for o in base if o["kind"] == "HorizontalPodAutoscaler" and o["metadata"]["name"] == "ingest-worker")
    assert "ingest-worker: owned by" in vd.autoscaling_errors((*gke, *both))[0]
    iap = next(o for o in gke if o["kind"] == "BackendConfig")
    assert iap["spec"]["iap"]["enabled"] is True and iap["spec"]["healthCheck"]["requestPath"] == "/healthz"
    annotated = {o["metadata"]["name"] for o in gke if o["kind"] == "Service" and o["metadata"].get("annotations")}
    assert annotated == {"gateway", "ingest", "labeler-review"}


def test_dockerfile_passes_hadolint():
    assert vd.hadolint_errors(vd.DOCKERFILE) == []


def test_hadolint_reports_what_it_finds(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install flask\n")
    codes = " ".join(vd.hadolint_errors(bad))
    assert "DL3006" in codes and "DL3013" in codes and "DL3042" in codes


def test_dockerfile_targets_are_multistage_pinned_non_root_with_healthchecks():
    assert vd.dockerfile_errors() == []
    assert vd.dockerfile_port_errors() == []
    assert {s: vd.dockerfile(s).expose for s in vd.SERVICES} == {
        "ingest": [8001],
        "labeler": [8002],
        "trainer": [],
        "gateway": [8000],
    }
    # One Dockerfile: every target is the shared runtime stage plus its own virtualenv, built elsewhere.
    assert {s: (vd.dockerfile(s).chain, vd.dockerfile(s).copied_from) for s in vd.SERVICES} == {
        s: (["runtime", s], [f"{s}-venv"]) for s in vd.SERVICES
    }
    assert not list(REPO.glob("services/*/Dockerfile"))


def test_dockerfile_checks_follow_each_target_through_its_stages(tmp_path):
    """A target inherits USER, ENV and EXPOSE from the stages it is built FROM; the checks see them."""
    good = vd.DOCKERFILE.read_text()
    broken = tmp_path / "Dockerfile"
    # The trainer's stage resets USER to root; the ingest target (the first) loses its HEALTHCHECK.
    without_healthcheck = re.sub(r"^HEALTHCHECK .*\\\n.*\n", "", good, count=1, flags=re.M)
    broken.write_text(without_healthcheck.replace('ENTRYPOINT ["roadseg"]', 'USER root\nENTRYPOINT ["roadseg"]'))
    errors = vd.dockerfile_errors(broken)
    assert "trainer: final USER must be a numeric non-root uid (Kubernetes runAsNonRoot checks it)" in errors
    assert "ingest: serves port(s) [8001] without a HEALTHCHECK" in errors
    assert len(errors) == 2, errors
    assert vd.dockerfile("trainer", broken).env["KERAS_HOME"] == "/tmp/keras"
    assert vd.dockerfile("trainer", broken).env["ROADSEG_MODEL_DIR"] == "/app/models/roads"  # from runtime


def test_compose_file_validates_against_the_compose_specification():
    assert vd.compose_schema_errors() == []
    broken = copy.deepcopy(vd.compose())
    broken["services"]["gateway"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["redis"]["depends_on"] = {"fake-gcs": {"condition": "when_ready"}}
    errors = " ".join(vd.compose_schema_errors(broken))
    assert "intervall" in errors and "when_ready" in errors


def test_compose_services_have_healthchecks_ordered_start_and_an_on_demand_trainer():
    services = vd.compose()["services"]
    one_shot = {name for name, svc in services.items() if svc.get("restart") == "no"}
    long_running = set(services) - one_shot
    assert one_shot - {"models-init"} == {name for name, svc in services.items() if "train" in svc.get("profiles", [])}
    assert {name for name in long_running if "healthcheck" not in services[name]} == set()
    for name in long_running - {"redis", "fake-gcs", "tfserving"}:
        conditions = {dep: c["condition"] for dep, c in services[name]["depends_on"].items()}
        assert conditions["redis"] == conditions["fake-gcs"] == "service_healthy", name
    assert services["gateway"]["depends_on"]["tfserving"]["condition"] == "service_healthy"
    assert services["trainer"]["profiles"] == services["trainer-export"]["profiles"] == ["train"]
    assert services["trainer-export"]["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    # The shipped versions are copied into the runtime folder before TF Serving starts; nothing writes them.
    assert services["tfserving"]["depends_on"]["models-init"]["condition"] == "service_completed_successfully"
    writable = [v for svc in services.values() for v in svc.get("volumes", []) if v.startswith("./models/")]
    assert writable == ["./models/roads:/app/models/shipped:ro"]
    env = vd.compose_environment(services["ingest"])
    assert env["ROADSEG_STORAGE_URL"].startswith("gs://") and env["STORAGE_EMULATOR_HOST"] == "http://fake-gcs:4443"


def test_env_example_documents_every_setting_and_compose_variable():
    assert vd.env_example_errors() == []


def test_roadseg_settings_are_known_and_set_or_defaulted_consistently():
    assert vd.settings_consistency_errors() == []
    unsafe = vd.container_unsafe_settings()
    # The rule has teeth: storage, Redis, model folder and service addresses must be set everywhere.
    assert {"ROADSEG_STORAGE_URL", "ROADSEG_REDIS_URL", "ROADSEG_MODEL_DIR", "ROADSEG_GATEWAY_URL"} <= set(unsafe)


def test_image_names_and_ports_agree_across_compose_kubernetes_and_dockerfiles():
    assert vd.image_errors() == []
    assert vd.compose_port_errors() == []
    assert vd.tfserving_errors() == []


def test_image_requirements_split_requirements_txt_exactly():
    assert vd.requirements_errors() == []


def test_trainer_commands_in_compose_and_kubernetes_parse_with_the_roadseg_cli():
    from roadseg.cli import build_parser

    parser = build_parser()
    commands = [vd.compose()["services"][name]["command"] for name in ("trainer", "trainer-export")]
    commands += [c["args"] for owner, c in vd.containers(vd.render("base")) if owner == "trainer"]
    assert [parser.parse_args(command).command for command in commands] == ["train", "export", "train", "export"]


def test_ingest_image_code_imports_without_tensorflow():
    """The ingest image has no TensorFlow: its API and worker (which loads every task module) must not need it."""
    code = """
import importlib.abc, sys
class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tensorflow_serving"):
            raise ImportError(f"{name} is not installed in the ingest image")
sys.meta_path.insert(0, NoTensorFlow())
from roadseg.celery_app import app
app.loader.import_default_modules()
sys.path.insert(0, "services/ingest")
import main
print(type(main.app).__name__)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("FastAPI")


def test_tf_serving_gets_the_measured_batching_file_in_compose_and_kubernetes():
    """One batching parameters file, mounted by compose and generated into a ConfigMap by kustomize."""
    config = (REPO / "deploy" / "k8s" / "base" / "batching.config").read_text()
    fields = dict(line.split(" {")[0:2] for line in config.splitlines() if line and not line.startswith("#"))
    assert set(fields) == {"max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"}
    tfserving = vd.compose()["services"]["tfserving"]
    assert "--enable_batching" in tfserving["command"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in tfserving["volumes"]}
    assert mounted["./deploy/k8s/base/batching.config"] == "/etc/tfserving/batching.config"
    deployment = next(
        o for o in vd.render("base") if o["kind"] == "Deployment" and o["metadata"]["name"] == "tfserving"
    )
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--enable_batching" in args and "--batching_parameters_file=/etc/tfserving/batching.config" in args
    maps = [
        o
        for o in vd.render("base")
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("tfserving-batching")
    ]
    assert maps and maps[0]["data"]["batching.config"] == config
