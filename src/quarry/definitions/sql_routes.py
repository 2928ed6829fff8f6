""".sql files as routes of routing agents, as Oxy reads them: the file's ``oxy:``
header (a YAML block comment opening the file, ``/* oxy: {database: local} */``)
names the database its fixed query runs on.

Pure functions (no I/O), shared by the compiler, which warns about a route whose
header is unusable, and by ``quarry.agents.routing``, which leaves such a route
out of the turn: both say the same thing for the same file.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
from collections.abc import Callable, Collection, Iterable

import yaml

from quarry.core.errors import WARNING, Problem

# Oxy's header: a block comment opening the file, YAML with an ``oxy:`` mapping.
_HEADER = re.compile(r"^\s*/\*(.*?)\*/", re.S)


def _header(text: str) -> tuple[object, str | None]:
    """(the ``oxy:`` value, None) or (None, why the header cannot be read)."""
    match = _HEADER.match(text)
    if match is None:
        return None, "it does not open with an oxy: header (/* oxy: {database: NAME} */)"
    try:
        header = yaml.safe_load(match.group(1).replace("\n*", "\n"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem", None) or "invalid YAML"
        return None, f"its oxy: header is not valid YAML ({mark})"
    oxy = header.get("oxy") if isinstance(header, dict) else None
    if not isinstance(oxy, dict):
        return None, "its header comment has no oxy: mapping"
    return oxy, None


def sql_file_database(text: str) -> str | None:
    """The database an SQL file's ``oxy:`` header names, or None."""
    oxy, _ = _header(text)
    database = oxy.get("database") if isinstance(oxy, dict) else None
    return database if isinstance(database, str) and database else None


def route_header_problem(text: str, databases: Collection[str] | None) -> str | None:
    """Why an SQL file cannot be a route (its header names no usable database), or
    None when it can. ``databases`` None: config.yml could not be read, so the name
    is not checked."""
    oxy, why = _header(text)
    if why is not None:
        return why
    assert isinstance(oxy, dict)
    database = oxy.get("database")
    if not isinstance(database, str) or not database:
        return "its oxy: header names no database (oxy: {database: NAME})"
    if databases is not None and database not in databases:
        listed = ", ".join(sorted(databases)) or "none"
        return f"its database {database!r} is not in config.yml (databases: {listed})"
    return None


def routed_sql_files(routes: Iterable[str], paths: Iterable[str]) -> list[str]:
    """The ``.sql`` files among ``paths`` that the routes (paths or globs) name."""
    patterns = [posixpath.normpath(r.strip().replace("\\", "/")) for r in routes]
    return [
        path
        for path in sorted(p for p in paths if p.endswith(".sql"))
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)
    ]


def sql_route_problems(
    agents: Iterable[tuple[str, list[str]]],
    paths: Collection[str],
    read: Callable[[str], str | None],
    databases: Collection[str] | None,
) -> list[Problem]:
    """One warning per routed ``.sql`` file that no turn can offer, at the file's
    first line, naming the routing agents (``agents``: path and routes) routing to
    it. ``read`` gives a file's text (None: unreadable, reported elsewhere)."""
    by_file: dict[str, list[str]] = {}
    for agent_path, routes in agents:
        for path in routed_sql_files(routes, paths):
            by_file.setdefault(path, []).append(agent_path)
    problems = []
    for path, routers in sorted(by_file.items()):
        text = read(path)
        if text is None:
            continue
        why = route_header_problem(text, databases)
        if why is not None:
            problems.append(
                Problem(
                    path,
                    1,
                    1,
                    f"this SQL file is a route of {', '.join(sorted(routers))} but {why}: "
                    "the route is left out, offered to no model",
                    WARNING,
                )
            )
    return problems


def routing_routes(body_json: str) -> list[str] | None:
    """A compiled agent body's ``routes`` when it is a routing agent, else None."""
    body = json.loads(body_json)
    if not isinstance(body, dict) or body.get("type") != "routing":
        return None
    return [str(route) for route in body.get("routes") or []]


def sql_file_embed(text: str) -> str | None:
    """The text an SQL file's ``oxy:`` header gives to embed (``embed:``, a string or a
    list of them), or None."""
    oxy, _ = _header(text)
    embed = oxy.get("embed") if isinstance(oxy, dict) else None
    if isinstance(embed, list):
        embed = "\n".join(str(item) for item in embed)
    return embed.strip() or None if isinstance(embed, str) else None
