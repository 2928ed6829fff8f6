"""Drift, the other direction: a route ``classify()`` calls FleetOk must not need the
Factory. Two checks, one static and one on a real serve-role process:

- no FleetOk route's handler module imports ``quarry.factory`` (directly or through
  anything it imports, function-level imports included);
- a serve-role application, built in a fresh interpreter, registers every FleetOk
  route of the full application without loading ``quarry.factory``: whatever a serve
  replica answers locally, it answers without the Factory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import grimp
import pytest
from fastapi import APIRouter, FastAPI

from quarry.api.app import create_app
from quarry.api.route_audit import RegisteredRoute, concrete_path, registered_routes
from quarry.core.settings import Settings
from quarry.fleet.routes import RouteClass, classify
from quarry.node.services import Services, build_services

FACTORY = "quarry.factory"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = build_services(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'state.db'}",
            blob_url=(tmp_path / "blobs").as_uri(),
            inprocess_workers="off",
        )
    )
    yield svc
    svc.close()


@cache
def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("quarry", cache_dir=None)


def fleet_ok(route: RegisteredRoute) -> list[str]:
    path = concrete_path(route.path)
    return [m for m in sorted(route.methods) if classify(m, path) is RouteClass.FLEET_OK]


def factory_dependent_fleet_ok_routes(app: FastAPI) -> list[str]:
    graph = _graph()
    problems = []
    for route in registered_routes(app):
        methods = fleet_ok(route)
        if not methods or not route.module.startswith("quarry"):
            continue
        if route.module == FACTORY or route.module.startswith(FACTORY + "."):
            needs = True
        else:
            needs = graph.chain_exists(importer=route.module, imported=FACTORY, as_packages=True)
        if needs:
            problems.append(
                f"{','.join(methods)} {route.path}: classify() says FleetOk but its handler "
                f"({route.module}) imports {FACTORY}"
            )
    return problems


def test_no_fleet_ok_handler_imports_the_factory(services: Services) -> None:
    app = create_app(services)
    assert factory_dependent_fleet_ok_routes(app) == []


def test_a_fleet_ok_route_that_needs_the_factory_is_caught(services: Services) -> None:
    app = create_app(services)
    router = APIRouter()

    async def preview() -> None:
        return None

    # quarry.cli imports the compiler (inside a function): a handler there needs it.
    preview.__module__ = "quarry.cli"
    router.add_api_route("/api/v1/workspaces/{workspace}/preview", preview, methods=["GET"])
    app.include_router(router)
    assert factory_dependent_fleet_ok_routes(app) == [
        "GET /api/v1/workspaces/{workspace}/preview: classify() says FleetOk but its handler "
        "(quarry.cli) imports quarry.factory"
    ]


SERVE_APP = textwrap.dedent(
    """
    import dataclasses, json, sys
    from quarry.api.app import create_app
    from quarry.api.route_audit import registered_routes
    from quarry.node.services import build_services
    from quarry.core.settings import Settings
    from quarry.core.topology import derive_topology

    db, blobs = sys.argv[1], sys.argv[2]
    svc = build_services(Settings(database_url=db, blob_url=blobs, inprocess_workers="off"))
    # The serve role refuses SQLite at start; the routes it registers do not depend on it.
    svc = dataclasses.replace(svc, topology=derive_topology(Settings(role="serve")))
    app = create_app(svc)
    routes = sorted(
        [m, r.path, r.module] for r in registered_routes(app) for m in r.methods
    )
    factory = any(n == "quarry.factory" or n.startswith("quarry.factory.") for n in sys.modules)
    print(json.dumps({"routes": routes, "factory_imported": factory}))
    """
)


def test_serve_app_registers_every_fleet_ok_route_without_the_factory(
    services: Services, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVE_APP,
            f"sqlite:///{tmp_path / 'serve.db'}",
            (tmp_path / "serve-blobs").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    serve = json.loads(done.stdout.strip().splitlines()[-1])
    assert serve["factory_imported"] is False
    served = {(m, path) for m, path, _module in serve["routes"]}
    assert not [r for r in serve["routes"] if r[2].startswith("quarry.api.ide")]
    full = create_app(services)
    expected = {(m, r.path) for r in registered_routes(full) for m in fleet_ok(r)}
    assert len(expected) > 15
    assert expected - served == set(), "FleetOk routes a serve replica cannot answer"
    ide_only = {
        (m, r.path)
        for r in registered_routes(full)
        for m in r.methods
        if (m, r.path) not in expected
    }
    assert ide_only, "the full app has IdeOnly routes"
    assert ide_only & served == set(), "a serve replica must proxy these, not answer them"
