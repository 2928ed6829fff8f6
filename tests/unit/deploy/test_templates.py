"""The provisioning templates in ``deploy/`` render and validate against their schemas
(``deploy/schemas/``), in both variants: scale to zero (``QUARRY_MIN_REPLICAS``
unset: 0) and always on (``QUARRY_MIN_REPLICAS=1``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
SCHEMAS = DEPLOY / "schemas"

ENV = {
    "QUARRY_IMAGE": "ghcr.io/acme/quarry:1.0",
    "QUARRY_BLOB_URL": "s3://acme-quarry/prod",
    "QUARRY_DATABASE_URL": "postgresql://quarry:secret@db.internal:5432/quarry",
    "ACA_LOCATION": "westeurope",
    "ACA_ENVIRONMENT_ID": (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/quarry"
        "/providers/Microsoft.App/managedEnvironments/quarry-env"
    ),
    "QUARRY_HOST": "factory.quarry.example.com",
}

# (apiVersion or ACA type, kind) -> schema file
SCHEMA_FOR = {
    ("Microsoft.App/containerApps", None): "aca-containerapp.schema.json",
    ("serving.knative.dev/v1", "Service"): "knative-service.schema.json",
    ("apps/v1", "Deployment"): "k8s-deployment.schema.json",
    ("v1", "Service"): "k8s-service.schema.json",
    ("http.keda.sh/v1alpha1", "HTTPScaledObject"): "keda-httpscaledobject.schema.json",
}

TEMPLATES = sorted(p.relative_to(DEPLOY).as_posix() for p in DEPLOY.glob("*/factory.yaml"))


def _render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quarry_deploy_render", DEPLOY / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _render_module()


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return schema


def _documents(template: str, **env: str) -> list[dict[str, Any]]:
    path = DEPLOY / template
    text = render.render(path.read_text(), {**ENV, **env}, source=str(path))
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def _schema_name(doc: dict[str, Any]) -> str:
    if "type" in doc and "apiVersion" not in doc:
        return SCHEMA_FOR[(doc["type"], None)]
    return SCHEMA_FOR[(doc["apiVersion"], doc["kind"])]


def _errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(_schema(_schema_name(doc)))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def _env_of(doc: dict[str, Any]) -> dict[str, Any]:
    if doc.get("type") == "Microsoft.App/containerApps":
        container = doc["properties"]["template"]["containers"][0]
    else:
        container = doc["spec"]["template"]["spec"]["containers"][0]
    return {
        e["name"]: e.get("value", e.get("valueFrom", e.get("secretRef"))) for e in container["env"]
    }


def _runs_the_factory(doc: dict[str, Any]) -> bool:
    if doc.get("type") == "Microsoft.App/containerApps":
        return True
    return doc.get("kind") in {"Deployment", "Service"} and "template" in doc.get("spec", {})


def _min_and_max(doc: dict[str, Any]) -> tuple[Any, Any] | None:
    if doc.get("type") == "Microsoft.App/containerApps":
        scale = doc["properties"]["template"]["scale"]
        return scale["minReplicas"], scale["maxReplicas"]
    if doc["kind"] == "Service" and doc["apiVersion"].startswith("serving.knative.dev"):
        notes = doc["spec"]["template"]["metadata"]["annotations"]
        return (
            int(notes["autoscaling.knative.dev/min-scale"]),
            int(notes["autoscaling.knative.dev/max-scale"]),
        )
    if doc["kind"] == "HTTPScaledObject":
        return doc["spec"]["replicas"]["min"], doc["spec"]["replicas"]["max"]
    return None


def test_schemas_are_valid_json_schemas() -> None:
    names = sorted(p.name for p in SCHEMAS.glob("*.schema.json"))
    assert names == sorted(set(SCHEMA_FOR.values()))
    for name in names:
        jsonschema.Draft202012Validator.check_schema(_schema(name))


def test_there_is_a_template_per_platform() -> None:
    assert TEMPLATES == [
        "azure-container-apps/factory.yaml",
        "keda-http/factory.yaml",
        "knative/factory.yaml",
    ]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("min_replicas", [None, "0", "1"])
def test_templates_validate_in_both_variants(template: str, min_replicas: str | None) -> None:
    env = {} if min_replicas is None else {"QUARRY_MIN_REPLICAS": min_replicas}
    docs = _documents(template, **env)
    assert docs
    expected_min = int(min_replicas or "0")
    scalers = 0
    for doc in docs:
        assert _errors(doc) == [], f"{template}: {doc.get('kind', doc.get('type'))}"
        bounds = _min_and_max(doc)
        if bounds is not None:
            scalers += 1
            assert bounds == (expected_min, 1)  # one writer, ever
        if _runs_the_factory(doc):
            env_vars = _env_of(doc)
            assert str(env_vars["QUARRY_MIN_REPLICAS"]) == str(expected_min)
            assert str(env_vars["QUARRY_SELF_URL"]).startswith("http://")
    assert scalers == 1


def test_aca_self_url_is_the_in_environment_address() -> None:
    (app,) = _documents("azure-container-apps/factory.yaml", QUARRY_APP_NAME="quarry-f1")
    assert app["name"] == "quarry-f1"
    assert _env_of(app)["QUARRY_SELF_URL"] == "http://quarry-f1"
    assert app["properties"]["configuration"]["ingress"]["external"] is False
    assert app["properties"]["template"]["scale"]["rules"][0]["http"]


def test_schemas_are_strict() -> None:
    (app,) = _documents("azure-container-apps/factory.yaml")
    app["properties"]["template"]["scale"]["maxReplicas"] = 2
    assert any("maxReplicas" in e for e in _errors(app))
    (app,) = _documents("azure-container-apps/factory.yaml")
    app["properties"]["template"]["scale"]["minReplica"] = 0  # a typo is not ignored
    assert any("minReplica" in e for e in _errors(app))
    (app,) = _documents("azure-container-apps/factory.yaml")
    env = app["properties"]["template"]["containers"][0]["env"]
    env[:] = [e for e in env if e["name"] != "QUARRY_SELF_URL"]
    assert _errors(app)
    (knative,) = _documents("knative/factory.yaml")
    notes = knative["spec"]["template"]["metadata"]["annotations"]
    notes["autoscaling.knative.dev/max-scale"] = "3"
    assert _errors(knative)
    *_, scaled = _documents("keda-http/factory.yaml")
    scaled["spec"]["scaleTargetRef"]["portName"] = "http"  # port and portName: exclusive
    assert _errors(scaled)


def test_two_replicas_is_refused() -> None:
    for template in TEMPLATES:
        docs = _documents(template, QUARRY_MIN_REPLICAS="2")
        assert any(_errors(doc) for doc in docs), template


def test_render_names_the_missing_variable_and_line(tmp_path: Path) -> None:
    path = DEPLOY / "knative/factory.yaml"
    env = {k: v for k, v in ENV.items() if k != "QUARRY_IMAGE"}
    with pytest.raises(render.RenderError) as excinfo:
        render.render(path.read_text(), env, source=str(path))
    message = str(excinfo.value)
    line = next(
        n for n, text in enumerate(path.read_text().splitlines(), 1) if "${QUARRY_IMAGE}" in text
    )
    assert f"{path}:{line}: ${{QUARRY_IMAGE}} is not set" in message
    with pytest.raises(render.RenderError, match=r"QUARRY_BLOB_URL.*break the YAML"):
        render.render(path.read_text(), {**ENV, "QUARRY_BLOB_URL": 's3://x" injected'})


def test_render_cli_prints_nothing_on_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    assert render.main(["render.py", str(DEPLOY / "knative/factory.yaml")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "QUARRY_IMAGE" in err
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    assert render.main(["render.py", str(DEPLOY / "knative/factory.yaml")]) == 0
    out, _ = capsys.readouterr()
    assert "autoscaling.knative.dev/min-scale" in out
