"""A two-tenant fleet on Postgres + S3 with the production containment defaults, and
tenant globex's editor as the attacker: every escape is a workflow of globex's
workspace, started over HTTP with globex's editor token and executed by the
Factory's in-process worker (the real executor, in the process that holds the
fleet's secrets)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quarry.factory.local import compile_local
from tests.support.tenancy import (
    ACME_WS,
    GLOBEX,
    GLOBEX_WS,
    Deployment,
    postgres_settings,
    s3_url,
    two_tenants,
)

# What the fleet's own process environment holds that no workspace may read.
FLEET_SECRET = "fleet-secret-7c1d9e"


@dataclass
class Fleet:
    dep: Deployment
    data_dir: Path
    state_url: str

    @property
    def globex_root(self) -> Path:
        return self.dep.roots[GLOBEX]

    def add_workflows(self, files: dict[str, str], config: str | None = None) -> None:
        """Write globex workflow files (and config.yml) and compile the workspace."""
        root = self.globex_root
        for name, body in files.items():
            (root / "workflows" / f"{name}.workflow.yml").write_text(body)
        if config is not None:
            (root / "config.yml").write_text(config)
        svc = self.dep.svc
        compile_local(svc.engine, svc.store, GLOBEX, root, GLOBEX_WS, data_dir=self.data_dir)

    def config_with(self, *databases: str) -> str:
        """globex's config.yml with ``databases`` (YAML flow mappings) added."""
        text = (self.globex_root / "config.yml").read_text()
        extra = "".join(f"  - {db}\n" for db in databases)
        return text.replace("databases:\n", "databases:\n" + extra, 1)

    def run(self, workflow: str, who: str = f"{GLOBEX}:editor") -> dict[str, Any]:
        """Start ``workflows/<workflow>`` as ``who`` and wait for it to finish."""
        ws = GLOBEX_WS if who.startswith(GLOBEX) else ACME_WS
        with self.dep.client(who) as client:
            created = client.post(
                f"/api/v1/workspaces/{ws}/runs", json={"name": f"workflows/{workflow}"}
            )
            assert created.status_code in (200, 201, 202), created.text
            run_id = created.json()["id"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
                if run["state"] in {"succeeded", "failed", "cancelled"}:
                    return run
                with client.stream("GET", f"/api/v1/runs/{run_id}/events") as stream:
                    for _ in stream.iter_text():
                        pass
        raise TimeoutError(f"run {run_id} of {workflow} did not finish")

    def step_output(self, run_id: str, step: str, who: str = f"{GLOBEX}:editor") -> Any:
        with self.dep.client(who) as client:
            return client.get(f"/api/v1/runs/{run_id}/steps/{step}/output").json()


@contextmanager
def running_fleet(
    pg_database: str, s3_bucket_url: str, tmp_path: Path, **overrides: Any
) -> Iterator[Fleet]:
    """Role ``all`` with in-process workers; containment settings at their fleet
    defaults unless ``overrides`` say otherwise."""
    values: dict[str, Any] = {"inprocess_workers": "on", **overrides}
    settings = postgres_settings(pg_database, s3_bucket_url, tmp_path, **values)
    with two_tenants(settings, tmp_path) as dep:
        yield Fleet(dep, tmp_path / "data", pg_database)


@pytest.fixture
def fleet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production defaults: the suite-wide test opt-ins removed, and a secret of
    the fleet in the process environment that no workspace may read."""
    for name in (
        "QUARRY_WAREHOUSE_ALLOW_LOOPBACK",
        "QUARRY_WAREHOUSE_ALLOW_STATE_CLUSTER",
        "QUARRY_SECRET_ENV_ALLOW",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QUARRY_FLEET_SECRET_FOR_TESTS", FLEET_SECRET)


@pytest.fixture
def fleet(
    fleet_env: None,
    request: pytest.FixtureRequest,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Fleet]:
    with running_fleet(pg_database, s3_url(request, monkeypatch), tmp_path) as running:
        yield running


def failure(run: dict[str, Any]) -> str:
    """The run's error and every step's error, as one text to search."""
    parts = [str(run.get("error") or "")]
    parts += [str(step.get("error") or "") for step in run.get("steps", [])]
    return "\n".join(parts)


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*")) if root.exists() else set()
