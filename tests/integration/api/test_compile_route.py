"""POST /compile (IdeOnly): compile the working copy on the Factory, over a socket."""

from __future__ import annotations

from pathlib import Path

import httpx

from quarry.api.app import create_app
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from tests.conftest import Backend
from tests.support.processes import serve_in_thread


def test_compile_route_promotes_and_refuses_broken_files(backend: Backend, tmp_path: Path) -> None:
    svc = build_services(
        backend.settings(data_dir=tmp_path / "data", revision_cache_ttl=0, inprocess_workers="off")
    )
    root = create_demo_workspace(tmp_path / "shop")
    first = compile_local(svc.engine, svc.store, "local", root, "shop")
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url, timeout=30) as client:
        unchanged = client.post("/api/v1/workspaces/shop/compile").json()
        assert unchanged["unchanged"] and unchanged["revision_id"] == first.revision_id

        view = root / "semantics" / "orders.view.yml"
        view.write_text(view.read_text().replace("label: Orders", "label: Order lines", 1))
        changed = client.post("/api/v1/workspaces/shop/compile").json()
        assert changed["promoted"] and changed["parsed"] == 1
        current = client.get("/api/v1/workspaces/shop").json()["current_revision_id"]
        assert current == changed["revision_id"]

        # An unknown key is only a warning in a view (as in Oxy); a bad enum value is an error.
        view.write_text(view.read_text().replace("type: number", "type: nmber", 1))
        broken = client.post("/api/v1/workspaces/shop/compile")
        assert broken.status_code == 422
        problems = broken.json()["details"]["problems"]
        assert problems[0]["path"] == "semantics/orders.view.yml" and problems[0]["line"] > 1
        assert client.get("/api/v1/workspaces/shop").json()["current_revision_id"] == current
        assert client.post("/api/v1/workspaces/nope/compile").status_code == 404
    svc.close()


def test_serve_role_has_no_ide_routes(tmp_path: Path) -> None:
    from quarry.api.route_audit import registered_routes
    from quarry.core.settings import Role, Settings
    from quarry.core.topology import derive_topology

    settings = Settings(role=Role.SERVE)
    assert not derive_topology(settings).serves_ide_routes
    svc = build_services(
        Settings(
            database_url=f"sqlite:///{tmp_path / 's.db'}",
            blob_url=(tmp_path / "b").as_uri(),
            inprocess_workers="off",
        )
    )
    svc.topology = derive_topology(settings)
    app = create_app(svc)
    paths = {r.path for r in registered_routes(app)}
    assert "/api/v1/workspaces/{workspace}/compile" not in paths
    assert "/api/v1/workspaces/{workspace}/definitions" in paths
    svc.close()
