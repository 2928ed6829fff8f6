"""Route drift: ``classify()`` must agree with where each route is registered.

A route defined in ``quarry.api.ide`` (or the IDE pages, ``quarry.web.ide``) needs
the Factory (IdeOnly); every other route
is FleetOk. A route whose class ``classify()`` gets wrong, or a pattern that matches
no route, is drift: the proxy would send requests to the wrong process.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from quarry.fleet.routes import (
    FLEET_OK_READ_PATTERNS,
    IDE_ONLY_PATTERNS,
    RouteClass,
    classify,
    pattern_regex,
)

IDE_PACKAGE = "quarry.api.ide"
IDE_PAGES = "quarry.web.ide"  # the IDE pages: served where the Factory runs, like its API


@dataclass(frozen=True)
class RegisteredRoute:
    path: str
    methods: frozenset[str]
    module: str


def declared_class(route: RegisteredRoute) -> RouteClass:
    ide = route.module.startswith((IDE_PACKAGE, IDE_PAGES))
    return RouteClass.IDE_ONLY if ide else RouteClass.FLEET_OK


def _walk(routes: Iterable[Any], prefix: str) -> Iterator[RegisteredRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            module = getattr(route.endpoint, "__module__", "") or ""
            yield RegisteredRoute(prefix + route.path, frozenset(route.methods or ()), module)
        elif hasattr(route, "original_router"):
            # FastAPI >= 0.16x keeps included routers as lazy branches.
            context = getattr(route, "include_context", None)
            inner = getattr(context, "prefix", "") or ""
            yield from _walk(route.original_router.routes, prefix + inner)
        elif isinstance(route, (Route, Mount)):
            continue  # Starlette's own (docs, openapi.json, static files): FleetOk reads
        else:
            raise TypeError(f"cannot audit route {route!r}: unknown route type")


def registered_routes(app: FastAPI) -> list[RegisteredRoute]:
    """Every API route the application serves, however routers were included."""
    return list(_walk(app.routes, ""))


def concrete_path(template: str) -> str:
    """A request path the route template matches: each ``{param}`` becomes ``x``."""
    return re.sub(r"\{[^}]+\}", "x", template)


def route_class_problems(app: FastAPI) -> list[str]:
    problems = []
    for route in registered_routes(app):
        expected = declared_class(route)
        for method in sorted(route.methods):
            got = classify(method, concrete_path(route.path))
            if got is not expected:
                problems.append(
                    f"{method} {route.path}: registered as {expected.value} "
                    f"({route.module}) but classify() says {got.value}"
                )
    return problems


def unused_patterns(
    apps: Iterable[FastAPI],
    patterns: tuple[tuple[str, str], ...] = IDE_ONLY_PATTERNS + FLEET_OK_READ_PATTERNS,
) -> list[str]:
    """Patterns that match no route of any of ``apps`` (e.g. an ide and a serve app)."""
    requests = [
        (method, concrete_path(route.path))
        for app in apps
        for route in registered_routes(app)
        for method in route.methods
    ]
    return [
        f"{method} {pattern}"
        for method, pattern in patterns
        if not any(
            (method in ("*", m)) and pattern_regex(pattern).match(path) for m, path in requests
        )
    ]
