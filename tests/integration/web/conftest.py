"""A compiled demo workspace served on a real socket, with its services at hand."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from quarry.api.app import create_app
from quarry.api.services import Services, build_services
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.store.workspaces import WorkspaceRow
from tests.conftest import Backend
from tests.support.processes import serve_in_thread


@dataclass
class Served:
    client: httpx.Client
    url: str
    svc: Services
    root: Path
    workspace: WorkspaceRow
    revision_id: str


@contextmanager
def serve_demo(backend: Backend, tmp_path: Path) -> Iterator[Served]:
    svc = build_services(backend.settings(data_dir=tmp_path / "data", revision_cache_ttl=0))
    root = create_demo_workspace(tmp_path / "shop")
    result = compile_local(svc.engine, svc.store, "local", root, "shop")
    ws = svc.catalog.workspace("local", "shop", fresh=True)
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url) as client:
        yield Served(client, url, svc, root, ws, result.revision_id)
    svc.close()


@pytest.fixture
def served(backend: Backend, tmp_path: Path) -> Iterator[Served]:
    with serve_demo(backend, tmp_path) as got:
        yield got


@pytest.fixture
def served_sqlite(tmp_path: Path) -> Iterator[Served]:
    """One backend is enough for the browser; the data API is checked on both."""
    state = tmp_path / "state"
    state.mkdir()
    backend = Backend("sqlite", f"sqlite:///{state / 'state.db'}", (state / "blobs").as_uri())
    with serve_demo(backend, tmp_path) as got:
        yield got
