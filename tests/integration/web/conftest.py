"""A compiled demo workspace served on a real socket, with its services at hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from quarry.api.app import create_app
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.store.workspaces import WorkspaceRow
from tests.conftest import Backend
from tests.support.processes import serve_in_thread


@dataclass
class Demo:
    svc: Services
    root: Path
    workspace: WorkspaceRow
    revision_id: str


@dataclass
class Served(Demo):
    url: str
    client: httpx.Client


@contextmanager
def serve_demo(
    backend: Backend,
    tmp_path: Path,
    wrap: Callable[[FastAPI, Demo], None] | None = None,
    extra_files: dict[str, str] | None = None,
    *,
    workers: bool = False,
) -> Iterator[Served]:
    """``wrap`` may add test-only middleware to the app before it serves;
    ``extra_files`` are written into the demo workspace before it compiles.

    Without ``workers`` there are no in-process workers: results are stored by the
    test, so nothing else may pick up a run the page starts; with them, the real
    worker executes the app as in production.
    """
    settings = backend.settings(
        data_dir=tmp_path / "data",
        revision_cache_ttl=0,
        inprocess_workers="on" if workers else "off",
    )
    svc = build_services(settings)
    root = create_demo_workspace(tmp_path / "shop")
    for relpath, text in (extra_files or {}).items():
        (root / relpath).write_text(text)
    result = compile_local(svc.engine, svc.store, "local", root, "shop")
    demo = Demo(svc, root, svc.catalog.workspace("local", "shop", fresh=True), result.revision_id)
    app = create_app(svc)
    if wrap is not None:
        wrap(app, demo)
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        yield Served(demo.svc, demo.root, demo.workspace, demo.revision_id, url, client)
    svc.close()


@pytest.fixture
def served(backend: Backend, tmp_path: Path) -> Iterator[Served]:
    with serve_demo(backend, tmp_path) as got:
        yield got


@pytest.fixture
def backend_sqlite(tmp_path: Path) -> Backend:
    """One backend is enough for the browser; the data API is checked on both."""
    state = tmp_path / "state"
    state.mkdir()
    return Backend("sqlite", f"sqlite:///{state / 'state.db'}", (state / "blobs").as_uri())


@pytest.fixture
def served_sqlite(backend_sqlite: Backend, tmp_path: Path) -> Iterator[Served]:
    with serve_demo(backend_sqlite, tmp_path) as got:
        yield got
