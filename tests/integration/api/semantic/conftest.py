"""The shop workspace compiled on each backend, served on a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from quarry.api.app import create_app
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.runtime.runs.executor import RunExecutor
from quarry.runtime.runs.service import RunRequest, create_run
from quarry.store.runs import get_run
from quarry.store.workspaces import WorkspaceRow
from tests.conftest import Backend
from tests.integration.api.semantic.shop import make_shop
from tests.support.processes import serve_in_thread

WS = "shop"


@dataclass
class Shop:
    svc: Services
    root: Path
    workspace: WorkspaceRow
    revision_id: str
    url: str
    app: Any

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def run(self, kind: str, name: str, variables: dict[str, Any]) -> str:
        """Execute a run here, as ``quarry run`` does; its id."""
        run = create_run(
            self.svc,
            self.workspace,
            RunRequest(kind, name, variables, origin="test"),
            enqueue=False,
        )
        executor = RunExecutor(self.svc, self.root.parent / "run-cache")
        outcome = executor.execute(run, None)
        if outcome["state"] != "succeeded":
            with self.svc.engine.connect() as conn:
                failed = get_run(conn, "local", run.id)
            raise AssertionError(f"run {run.id} {outcome['state']}: {failed.error}")
        return run.id


def compile_shop(svc: Services, root: Path) -> tuple[WorkspaceRow, str]:
    result = compile_local(svc.engine, svc.store, "local", root, WS)
    assert not [p for p in result.problems if not getattr(p, "is_warning", False)], result.problems
    ws = svc.catalog.workspace("local", WS, fresh=True)
    return ws, result.revision_id


@pytest.fixture
def shop(backend: Backend, tmp_path: Path) -> Iterator[Shop]:
    svc = build_services(
        backend.settings(data_dir=tmp_path / "data", inprocess_workers="off", revision_cache_ttl=0)
    )
    root = make_shop(tmp_path / "shop")
    ws, rev = compile_shop(svc, root)
    app = create_app(svc)
    try:
        with serve_in_thread(app) as url:
            yield Shop(svc, root, ws, rev, url, app)
    finally:
        svc.close()
