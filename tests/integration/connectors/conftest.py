"""A workspace per test, compiled on a SQLite state database, and its workflows run
as a worker runs them, under a connector policy the test chooses (local, fleet
with loopback refused, or tenant SQL in the connector host process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from quarry.core.settings import Settings
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.runtime.connectors import BlobCache, Connections
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.engine import MemoryJournal, RunResult, run_workflow
from quarry.runtime.source import RevisionSource

# Tests reach their servers on loopback; everything else is the fleet's strict default.
FLEET_LOOPBACK = ConnectorPolicy(
    fleet=True, warehouse_allow_loopback=True, secret_env_allow={"*": ("T_*",)}
)
FLEET_STRICT = ConnectorPolicy(fleet=True, secret_env_allow={"*": ("T_*",)})
ISOLATED = replace(FLEET_LOOPBACK, tenant_sql_isolation="process")


@pytest.fixture
def sqlite_services(tmp_path: Path) -> Iterator[Services]:
    state = tmp_path / "state"
    state.mkdir()
    settings = Settings(
        database_url=f"sqlite:///{state / 'state.db'}",
        blob_url=(state / "blobs").as_uri(),
        data_dir=tmp_path / "data",
    )
    svc = build_services(settings)
    yield svc
    svc.close()


@dataclass
class Workspace:
    """A compiled workspace and the secrets (``*_var`` values) its runs see."""

    source: RevisionSource
    cache: BlobCache
    secrets: dict[str, str] = field(default_factory=dict)

    def run(
        self,
        workflow: str,
        variables: dict[str, Any] | None = None,
        *,
        policy: ConnectorPolicy | None = None,
    ) -> RunResult:
        used = policy or ConnectorPolicy.local()
        connections = Connections(self.source, self.cache, secrets=self.secrets.get, policy=used)
        try:
            return run_workflow(
                self.source,
                workflow,
                variables,
                connections=connections,
                journal=MemoryJournal(),
            )
        finally:
            connections.close()


@pytest.fixture
def make_workspace(sqlite_services: Services, tmp_path: Path) -> Callable[..., Workspace]:
    made: list[Path] = []

    def make(config: str, workflows: dict[str, str], secrets: dict[str, str]) -> Workspace:
        root = tmp_path / f"ws{len(made)}"
        made.append(root)
        (root / "workflows").mkdir(parents=True)
        (root / "config.yml").write_text(config)
        for name, text in workflows.items():
            (root / "workflows" / f"{name}.workflow.yml").write_text(text)
        svc = sqlite_services
        result = compile_local(svc.engine, svc.store, "local", root, "ws")
        errors = [p for p in result.problems if not p.is_warning]
        assert not errors, errors
        row = svc.catalog.workspace("local", "ws", fresh=True)
        source = RevisionSource(svc.catalog, row, result.revision_id)
        return Workspace(source, BlobCache(tmp_path / "data" / "cache"), dict(secrets))

    return make
