"""The Kubernetes manifests in ``deploy/k8s`` render with ``kubectl kustomize`` (the base
and every overlay) and every object validates against the subset schemas in
``deploy/schemas/k8s`` (Kubernetes and KEDA: strict, so a typo fails). On top of the
schemas, the fleet's rules: one writer owning the only volume, migrations only in the
Job, secrets only by reference, probes on /healthz and /readyz, the Factory reached
through its Service, every QUARRY_* variable a real setting."""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from quarry.core.settings import Settings

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"
SCHEMAS = REPO / "deploy" / "schemas" / "k8s"
OVERLAYS = ["base", *sorted(f"overlays/{p.name}" for p in (K8S / "overlays").iterdir())]
SCHEMA_FOR = {
    ("v1", "ConfigMap"): "configmap.schema.json",
    ("v1", "ServiceAccount"): "serviceaccount.schema.json",
    ("v1", "Service"): "service.schema.json",
    ("batch/v1", "Job"): "job.schema.json",
    ("apps/v1", "StatefulSet"): "statefulset.schema.json",
    ("apps/v1", "Deployment"): "deployment.schema.json",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "hpa.schema.json",
    ("policy/v1", "PodDisruptionBudget"): "pdb.schema.json",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicy.schema.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.schema.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication.schema.json",
    ("http.keda.sh/v1alpha1", "HTTPScaledObject"): "keda-httpscaledobject.schema.json",
}
SECRET_VARIABLES = {
    "QUARRY_DATABASE_URL",
    "QUARRY_METRICS_TOKEN",
    "QUARRY_GIT_CREDENTIALS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}
ENTRYPOINT_ONLY = {"QUARRY_SCHEMA_WAIT_SECONDS"}  # read by deploy/entrypoint.sh
INTERCEPTOR = "http://keda-add-on-http-interceptor-proxy.keda:8080"

Doc = dict[str, Any]


@functools.cache
def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (scripts/system-deps installs it)")
    version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True)
    found = re.search(r"Kustomize Version: v(\d+)", version.stdout)
    if found is None or int(found[1]) < 4:
        pytest.skip(f"{kubectl} bundles no kustomize v4+ (kubectl 1.21 or later needed)")
    return kubectl


def render(path: Path) -> list[Doc]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path}: {result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.schema.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


REGISTRY = _registry()


def errors(doc: Doc) -> list[str]:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in SCHEMA_FOR:
        return [f"no schema for {key}: add one to deploy/schemas/k8s"]
    schema = json.loads((SCHEMAS / SCHEMA_FOR[key]).read_text())
    validator = jsonschema.Draft202012Validator(schema, registry=REGISTRY)
    return [
        f"{doc['kind']}/{doc['metadata'].get('name')}: "
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def _find(docs: list[Doc], kind: str, name: str) -> Doc:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _pod(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    return request.param, render(K8S / request.param)


def test_schemas_are_valid_json_schemas() -> None:
    names = {p.name for p in SCHEMAS.glob("*.schema.json")}
    assert names == set(SCHEMA_FOR.values()) | {"defs.schema.json"}
    for name in names:
        jsonschema.Draft202012Validator.check_schema(json.loads((SCHEMAS / name).read_text()))


def test_there_are_overlays_for_production_and_scale_to_zero() -> None:
    assert {"overlays/production", "overlays/scale-to-zero"} <= set(OVERLAYS)


def test_every_object_validates(rendered: tuple[str, list[Doc]]) -> None:
    overlay, docs = rendered
    problems = [e for doc in docs for e in errors(doc)]
    assert problems == [], overlay
    assert all(doc["metadata"].get("namespace") == "quarry" for doc in docs)
    assert not [d for d in docs if d["kind"] == "Secret"], "secrets are referenced, not shipped"


def test_one_writer_owns_the_only_volume(rendered: tuple[str, list[Doc]]) -> None:
    overlay, docs = rendered
    factory = _find(docs, "StatefulSet", "quarry-factory")
    assert factory["spec"]["replicas"] == (0 if overlay.endswith("scale-to-zero") else 1)
    claims = [t["metadata"]["name"] for t in factory["spec"]["volumeClaimTemplates"]]
    assert claims == ["workspaces"]
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"}:
            for volume in _pod(doc).get("volumes", []):
                assert "persistentVolumeClaim" not in volume, doc["metadata"]["name"]
    assert [d for d in docs if d["kind"] == "StatefulSet"] == [factory]
    http = [d for d in docs if d["kind"] == "HTTPScaledObject"]
    (container,) = _pod(factory)["containers"]
    min_replicas = _env(container)["QUARRY_MIN_REPLICAS"]["value"]
    if overlay.endswith("scale-to-zero"):
        (scaler,) = http
        assert scaler["spec"]["replicas"] == {"min": 0, "max": 1}
        assert scaler["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
        assert min_replicas == "0"
        assert _env(container)["QUARRY_SELF_URL"]["value"] == INTERCEPTOR
    else:
        assert http == [] and min_replicas == "1"


def test_only_the_migrate_job_migrates(rendered: tuple[str, list[Doc]]) -> None:
    _overlay, docs = rendered
    config = _find(docs, "ConfigMap", "quarry")
    assert config["data"]["QUARRY_SKIP_MIGRATIONS"] == "1"
    job = _find(docs, "Job", "quarry-migrate")
    (migrate,) = _pod(job)["containers"]
    assert _env(migrate)["QUARRY_ROLE"]["value"] == "migrate"
    assert "envFrom" not in migrate  # no QUARRY_SKIP_MIGRATIONS here
    workloads = [d for d in docs if d["kind"] in {"Deployment", "StatefulSet"}]
    assert len(workloads) == 3
    for doc in workloads:
        pod = _pod(doc)
        assert [c["args"] for c in pod["initContainers"]] == [["wait-for-schema"]]
        for container in pod["containers"]:
            assert {"configMapRef": {"name": "quarry"}} in container["envFrom"]


def test_roles_probes_and_scalers(rendered: tuple[str, list[Doc]]) -> None:
    overlay, docs = rendered
    roles = {}
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            (container,) = _pod(doc)["containers"]
            roles[doc["metadata"]["name"]] = _env(container)["QUARRY_ROLE"]["value"]
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert roles == {"quarry-factory": "ide", "quarry-serve": "serve", "quarry-worker": "worker"}
    worker = _find(docs, "Deployment", "quarry-worker")
    (container,) = _pod(worker)["containers"]
    grace = float(_env(container)["QUARRY_WORKER_SHUTDOWN_GRACE"]["value"])
    assert _pod(worker)["terminationGracePeriodSeconds"] >= grace + 10
    scaled = _find(docs, "ScaledObject", "quarry-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "quarry-worker"
    assert scaled["spec"]["minReplicaCount"] == (0 if overlay.endswith("scale-to-zero") else 1)
    hpa = _find(docs, "HorizontalPodAutoscaler", "quarry-serve")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "quarry-serve"
    assert {m["type"] for m in hpa["spec"]["metrics"]} == {"Resource", "Pods"}
    pdbs = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
    }
    assert pdbs == {"serve", "worker"}


def test_serve_reaches_the_factory_through_its_service(rendered: tuple[str, list[Doc]]) -> None:
    overlay, docs = rendered
    serve = _find(docs, "Deployment", "quarry-serve")
    (container,) = _pod(serve)["containers"]
    upstream = _env(container)["QUARRY_IDE_UPSTREAM"]["value"]
    service = _find(docs, "Service", "quarry-factory")
    port = service["spec"]["ports"][0]["port"]
    expected = INTERCEPTOR if overlay.endswith("scale-to-zero") else f"http://quarry-factory:{port}"
    assert upstream == expected
    policy = _find(docs, "NetworkPolicy", "quarry-factory")
    peers = policy["spec"]["ingress"][0]["from"]
    pods = [p["podSelector"]["matchLabels"] for p in peers if "podSelector" in p]
    assert pods == [{"app.kubernetes.io/name": "quarry", "app.kubernetes.io/component": "serve"}]
    deny = _find(docs, "NetworkPolicy", "quarry-default-deny")
    assert "ingress" not in deny["spec"]


def test_secrets_by_reference_and_every_variable_is_a_setting(
    rendered: tuple[str, list[Doc]],
) -> None:
    _overlay, docs = rendered
    settings = {f"QUARRY_{name.upper()}" for name in Settings.model_fields}
    seen: set[str] = set(_find(docs, "ConfigMap", "quarry")["data"])
    for doc in docs:
        if doc["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        pod = _pod(doc)
        for container in pod["containers"] + pod.get("initContainers", []):
            for name, entry in _env(container).items():
                seen.add(name)
                if name in SECRET_VARIABLES:
                    assert "value" not in entry, f"{name} must come from a secretKeyRef"
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == "quarry"
    quarry = {n for n in seen if n.startswith("QUARRY_")}
    assert quarry - settings - ENTRYPOINT_ONLY == set()
    documented = (REPO / "docs" / "deployment.md").read_text() + (
        REPO / "docs" / "configuration.md"
    ).read_text()
    assert {n for n in quarry if n not in documented} == set()


@pytest.mark.parametrize(
    ("kind", "name", "mutate", "expected"),
    [
        ("StatefulSet", "quarry-factory", lambda d: d["spec"].update(replicas=2), "replicas"),
        (
            "Deployment",
            "quarry-serve",
            lambda d: _pod(d)["containers"][0].update(readinesProbe={}),
            "readinesProbe",
        ),
        (
            "Deployment",
            "quarry-worker",
            lambda d: _pod(d)["containers"][0]["livenessProbe"]["httpGet"].update(path="/health"),
            "/health",
        ),
        (
            "Deployment",
            "quarry-serve",
            lambda d: _pod(d)["containers"][0]["securityContext"].update(
                readOnlyRootFilesystem=False
            ),
            "readOnlyRootFilesystem",
        ),
        (
            "Job",
            "quarry-migrate",
            lambda d: _pod(d)["containers"][0]["env"][1].update(value="postgresql://x"),
            "env/1",
        ),
        (
            "ScaledObject",
            "quarry-worker",
            lambda d: d["spec"]["triggers"][0]["metadata"].update(
                query="SELECT count(*) FROM tasks WHERE state = 'queued'"
            ),
            "query",
        ),
        (
            "HorizontalPodAutoscaler",
            "quarry-serve",
            lambda d: d["spec"]["metrics"][1]["pods"]["target"].update(type="Utilisation"),
            "metrics/1",
        ),
        ("Service", "quarry-factory", lambda d: d["spec"].update(typo=True), "typo"),
    ],
)
def test_a_broken_object_fails_validation(kind: str, name: str, mutate: Any, expected: str) -> None:
    docs = render(K8S / "base")
    doc = copy.deepcopy(_find(docs, kind, name))
    assert errors(doc) == []
    mutate(doc)
    problems = errors(doc)
    assert any(expected in p for p in problems), problems


def test_an_unknown_kind_fails() -> None:
    assert errors({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})


def test_a_broken_overlay_fails_to_render(tmp_path: Path) -> None:
    shutil.copytree(K8S, tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "scale-to-zero" / "kustomization.yaml"
    # The serve env was reordered: the guarded patch refuses instead of patching blind.
    overlay.write_text(overlay.read_text().replace("value: QUARRY_IDE_UPSTREAM", "value: X"))
    with pytest.raises(RuntimeError, match="test failed"):
        render(tmp_path / "k8s" / "overlays" / "scale-to-zero")
