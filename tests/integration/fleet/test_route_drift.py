"""Drift between the routes the application registers and ``classify()``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI

from quarry.api.app import create_app
from quarry.api.route_audit import (
    declared_class,
    registered_routes,
    route_class_problems,
    unused_patterns,
)
from quarry.core.settings import Settings
from quarry.fleet.routes import RouteClass, classify
from quarry.node.services import Services, build_services


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


def test_every_registered_route_is_classified_as_registered(services: Services) -> None:
    app = create_app(services)
    routes = {(r.path, declared_class(r)) for r in registered_routes(app)}
    assert len(routes) > 15, "the audit must see every route, however it was included"
    assert ("/api/v1/workspaces/{workspace}/compile", RouteClass.IDE_ONLY) in routes
    assert ("/api/v1/runs/{run_id}/events", RouteClass.FLEET_OK) in routes
    assert route_class_problems(app) == []
    assert classify("POST", "/api/v1/workspaces/demo/compile") is RouteClass.IDE_ONLY
    assert classify("GET", "/api/v1/workspaces/demo/definitions") is RouteClass.FLEET_OK


def test_every_pattern_matches_a_route(services: Services) -> None:
    assert unused_patterns([create_app(services)]) == []
    assert unused_patterns([FastAPI()]) != [], "the check itself must be able to fail"


def test_a_new_unclassified_ide_route_fails_the_check(services: Services) -> None:
    app = create_app(services)
    router = APIRouter()

    async def rename_file() -> None:
        return None

    rename_file.__module__ = "quarry.api.ide.files"
    router.add_api_route("/api/v1/workspaces/{workspace}/rename", rename_file, methods=["POST"])
    app.include_router(router)
    problems = route_class_problems(app)
    assert problems == [
        "POST /api/v1/workspaces/{workspace}/rename: registered as IdeOnly "
        "(quarry.api.ide.files) but classify() says FleetOk"
    ]
