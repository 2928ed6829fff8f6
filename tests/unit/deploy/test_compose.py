"""``deploy/compose.yaml``: the fleet's shape (Postgres, S3, migrate one-shot, one
Factory, two serve replicas, two workers), one image for every Quarry service, health
checks, start order by ``depends_on``, and every QUARRY_* variable a real setting."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from quarry.core.settings import Settings
from tests.unit.deploy.compose import QUARRY_IMAGE, role, services, start_order

SERVICES = services()
QUARRY = {n: s for n, s in SERVICES.items() if s.get("image") == QUARRY_IMAGE}


def _waits_for(spec: dict[str, Any], other: str, condition: str) -> bool:
    return bool(spec.get("depends_on", {}).get(other, {}).get("condition") == condition)


def test_the_fleet_shape() -> None:
    roles = Counter(role(s) for s in QUARRY.values())
    assert roles == {"ide": 1, "serve": 2, "worker": 2, "migrate": 1, None: 1}  # None: bucket
    assert {"postgres", "s3"} <= set(SERVICES)
    for spec in QUARRY.values():
        assert spec["build"] == {"context": "..", "dockerfile": "deploy/Containerfile"}
        assert spec["read_only"] is True


def test_every_variable_is_a_setting_and_only_migrate_migrates() -> None:
    settings = {f"QUARRY_{name.upper()}" for name in Settings.model_fields}
    for name, spec in QUARRY.items():
        env = spec.get("environment") or {}
        assert all(isinstance(v, str) for v in env.values()), name  # quoted, as compose needs
        assert {k for k in env if k.startswith("QUARRY_")} - settings == set(), name
        if role(spec) in {"ide", "serve", "worker"}:
            assert env["QUARRY_SKIP_MIGRATIONS"] == "1", name
        if role(spec) == "migrate":
            assert "QUARRY_SKIP_MIGRATIONS" not in env
    urls = {(s.get("environment") or {}).get("QUARRY_DATABASE_URL") for s in QUARRY.values()}
    assert len(urls - {None}) == 1


def _check_health_and_order(all_services: dict[str, dict[str, Any]]) -> None:
    order = start_order(all_services)
    for name, spec in all_services.items():
        if role(spec) in {"ide", "serve", "worker"} or name in {"postgres", "s3"}:
            assert spec["healthcheck"]["test"][0] == "CMD", name
        if role(spec) in {"ide", "worker"}:
            assert _waits_for(spec, "migrate", "service_completed_successfully"), name
        if role(spec) == "serve":
            assert _waits_for(spec, "factory", "service_healthy"), name
            assert spec["environment"]["QUARRY_IDE_UPSTREAM"] == "http://factory:8000"
            assert all(p.startswith("127.0.0.1:") for p in spec["ports"]), name
    assert _waits_for(all_services["migrate"], "postgres", "service_healthy")
    assert order.index("migrate") < order.index("factory") < order.index("serve-1")
    assert order.index("migrate") < order.index("worker-2")
    # Only the Factory keeps a named volume; only the replicas publish ports.
    published = [n for n, s in all_services.items() if "ports" in s]
    assert published == ["serve-1", "serve-2"]


def test_health_checks_and_start_order() -> None:
    _check_health_and_order(SERVICES)


@pytest.mark.parametrize("service", ["serve-1", "worker-1", "factory", "migrate"])
def test_a_service_that_skips_its_dependencies_is_caught(service: str) -> None:
    broken = {**SERVICES, service: {**SERVICES[service], "depends_on": {}}}
    with pytest.raises(AssertionError):
        _check_health_and_order(broken)


def test_a_service_without_a_health_check_is_caught() -> None:
    serve = {k: v for k, v in SERVICES["serve-2"].items() if k != "healthcheck"}
    with pytest.raises(KeyError):
        _check_health_and_order({**SERVICES, "serve-2": serve})
