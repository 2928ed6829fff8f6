"""The single routing authority: which process may answer a route.

``IdeOnly`` routes touch the working copy, git, the compiler or a run streaming on
the Factory; ``FleetOk`` routes read (or write) only the database and the object
store. ``FLEET_OK_READ_PATTERNS`` carve database reads out of an IdeOnly wildcard so
they stay highly available. Patterns use ``{name}`` for one path segment and
``{name:path}`` for the rest of the path, like the routes themselves.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache


class RouteClass(StrEnum):
    IDE_ONLY = "IdeOnly"
    FLEET_OK = "FleetOk"


# (methods or "*", pattern). Every pattern must match a registered route (a drift
# test checks it): add the file and git API's patterns with their routes.
IDE_ONLY_PATTERNS: tuple[tuple[str, str], ...] = (
    ("POST", "/api/v1/workspaces/{workspace}/compile"),
    # the Factory: registration, files, git, draft runs (docs/factory.md)
    ("POST", "/api/v1/workspaces"),
    ("DELETE", "/api/v1/workspaces/{workspace}"),
    ("*", "/api/v1/workspaces/{workspace}/files"),
    ("*", "/api/v1/workspaces/{workspace}/files/{path:path}"),
    ("POST", "/api/v1/workspaces/{workspace}/move"),
    ("*", "/api/v1/workspaces/{workspace}/git/{rest:path}"),
    ("POST", "/api/v1/workspaces/{workspace}/draft-runs"),
    # the IDE pages (quarry.web.ide): the page, its schemas and compile events
    ("GET", "/ide"),
    ("GET", "/ide/{rest:path}"),
)

FLEET_OK_READ_PATTERNS: tuple[tuple[str, str], ...] = ()


@lru_cache(maxsize=256)
def pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", pattern)
    out = []
    for part in parts:
        if part.startswith("{"):
            out.append(".+" if part.endswith(":path}") else "[^/]+")
        else:
            out.append(re.escape(part))
    return re.compile("^" + "".join(out) + "$")


def _matches(patterns: tuple[tuple[str, str], ...], method: str, path: str) -> bool:
    return any(
        (m == "*" or m == method) and pattern_regex(p).match(path) is not None for m, p in patterns
    )


def classify(method: str, path: str) -> RouteClass:
    method = method.upper()
    if _matches(FLEET_OK_READ_PATTERNS, method, path):
        return RouteClass.FLEET_OK
    if _matches(IDE_ONLY_PATTERNS, method, path):
        return RouteClass.IDE_ONLY
    return RouteClass.FLEET_OK
