"""A compiled demo workspace (plus a few test workflows) on each backend, and the
means to run its workflows: a revision source, a blob cache and connections."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from quarry.catalog.reader import Catalog
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.runtime.connectors import BlobCache, Connections
from quarry.runtime.engine import MemoryJournal, RunResult, StepJournal, run_workflow
from quarry.runtime.source import RevisionSource
from quarry.store.objects import ObjectStore
from tests.conftest import Backend

HERE = Path(__file__).parent
EXTRA_WORKFLOWS = HERE / "workflows"


@pytest.fixture
def services(backend: Backend, tmp_path: Path) -> Iterator[Services]:
    svc = build_services(backend.settings(data_dir=tmp_path / "data"))
    yield svc
    svc.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = create_demo_workspace(tmp_path / "shop")
    for src in EXTRA_WORKFLOWS.iterdir():
        (root / "workflows" / src.name).write_bytes(src.read_bytes())
    return root


class CountingStore(ObjectStore):
    """Delegates to a real store and counts ``get`` calls per key."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.gets: dict[str, int] = {}

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        self.gets[key] = self.gets.get(key, 0) + 1
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    async def put_async(self, key: str, data: bytes) -> None:
        await self.inner.put_async(key, data)

    async def get_async(self, key: str) -> bytes:
        return await self.inner.get_async(key)

    def check(self) -> None:
        self.inner.check()


@dataclass
class Runner:
    """Runs workflows of the compiled revision the way a worker would."""

    services: Services
    source: RevisionSource
    cache: BlobCache
    secrets: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    exports: list[tuple[str, bytes, str]] = field(default_factory=list)

    def run(
        self,
        workflow: str,
        variables: dict[str, Any] | None = None,
        *,
        journal: StepJournal | None = None,
        source: RevisionSource | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> RunResult:
        src = source or self.source
        connections = Connections(src, self.cache, secrets=self.secrets.get)
        try:
            return run_workflow(
                src,
                workflow,
                variables,
                connections=connections,
                journal=journal or MemoryJournal(),
                on_event=self.events.append,
                on_export=lambda path, data, fmt: self.exports.append((path, data, fmt)),
                should_stop=should_stop,
            )
        finally:
            connections.close()


def compile_source(
    services: Services, root: Path, store: ObjectStore | None = None
) -> RevisionSource:
    result = compile_local(services.engine, services.store, "local", root, "shop")
    assert not result.problems, result.problems
    row = services.catalog.workspace("local", "shop", fresh=True)
    catalog = services.catalog if store is None else Catalog(services.engine, store)
    return RevisionSource(catalog, row, result.revision_id)


@pytest.fixture
def make_runner(services: Services, tmp_path: Path) -> Callable[..., Runner]:
    def make(root: Path, *, store: ObjectStore | None = None, **kwargs: Any) -> Runner:
        source = compile_source(services, root, store)
        return Runner(services, source, BlobCache(tmp_path / "data" / "cache"), **kwargs)

    return make


@pytest.fixture
def runner(make_runner: Callable[..., Runner], workspace: Path) -> Runner:
    return make_runner(workspace)
