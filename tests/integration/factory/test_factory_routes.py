"""Every Factory route is classified where it is registered: the file, git, draft-run
and registration routes are IdeOnly (ide/all only), the compile status is FleetOk and
served by a serve replica from the database."""

from __future__ import annotations

from pathlib import Path

import httpx

from quarry.api.app import create_app
from quarry.api.route_audit import declared_class, registered_routes, route_class_problems
from quarry.core.settings import Role, Settings
from quarry.core.topology import derive_topology
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.fleet.routes import RouteClass, classify
from quarry.node.services import build_services
from tests.support.processes import serve_in_thread

IDE = [
    ("POST", "/api/v1/workspaces"),
    ("DELETE", "/api/v1/workspaces/shop"),
    ("GET", "/api/v1/workspaces/shop/files"),
    ("GET", "/api/v1/workspaces/shop/files/semantics/orders.view.yml"),
    ("PUT", "/api/v1/workspaces/shop/files/a/b.yml"),
    ("DELETE", "/api/v1/workspaces/shop/files/a.yml"),
    ("POST", "/api/v1/workspaces/shop/move"),
    ("GET", "/api/v1/workspaces/shop/git/status"),
    ("POST", "/api/v1/workspaces/shop/git/stage"),
    ("POST", "/api/v1/workspaces/shop/git/unstage"),
    ("DELETE", "/api/v1/workspaces/shop/git/branches/feature/x"),
    ("POST", "/api/v1/workspaces/shop/git/push"),
    ("POST", "/api/v1/workspaces/shop/draft-runs"),
    ("POST", "/api/v1/workspaces/shop/compile"),
]
FLEET = [
    ("GET", "/api/v1/workspaces"),
    ("GET", "/api/v1/workspaces/shop"),
    ("GET", "/api/v1/workspaces/shop/compile/status"),
    ("GET", "/api/v1/workspaces/shop/revision/files/queries/top_products.sql"),
    ("GET", "/api/v1/workspaces/shop/definitions/view/files"),
    ("POST", "/api/v1/workspaces/shop/runs"),
]


def _settings(tmp_path: Path, role: Role = Role.ALL) -> Settings:
    return Settings(
        role=role,
        database_url=f"sqlite:///{tmp_path / 'state.db'}",
        blob_url=(tmp_path / "blobs").as_uri(),
        data_dir=tmp_path / "data",
        inprocess_workers="off",
        auth="open",
    )


def test_classification_of_factory_routes(tmp_path: Path) -> None:
    for method, path in IDE:
        assert classify(method, path) is RouteClass.IDE_ONLY, (method, path)
    for method, path in FLEET:
        assert classify(method, path) is RouteClass.FLEET_OK, (method, path)
    svc = build_services(_settings(tmp_path))
    app = create_app(svc)
    assert route_class_problems(app) == []
    registered = {(r.path, declared_class(r)) for r in registered_routes(app)}
    assert ("/api/v1/workspaces/{workspace}/files/{path:path}", RouteClass.IDE_ONLY) in registered
    assert ("/api/v1/workspaces/{workspace}/compile/status", RouteClass.FLEET_OK) in registered
    for route in ("stage", "unstage"):
        path = f"/api/v1/workspaces/{{workspace}}/git/{route}"
        assert (path, RouteClass.IDE_ONLY) in registered, path
    svc.close()


def test_serve_replica_answers_compile_status_without_ide_routes(tmp_path: Path) -> None:
    svc = build_services(_settings(tmp_path))
    root = create_demo_workspace(tmp_path / "shop")
    compile_local(svc.engine, svc.store, "local", root, "shop")
    svc.topology = derive_topology(Settings(role=Role.SERVE))
    app = create_app(svc)
    paths = {r.path for r in registered_routes(app)}
    assert not any("/files" in p and "revision" not in p for p in paths)
    assert not any("/git/" in p or "draft-runs" in p for p in paths)
    assert not hasattr(app.state, "factory")
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        got = client.get("/api/v1/workspaces/shop/compile/status")
        assert got.status_code == 200, got.text
        assert got.json()["current_revision_id"] and got.json()["branches"] == []
        assert client.get("/api/v1/workspaces/nope/compile/status").status_code == 404
    svc.close()
