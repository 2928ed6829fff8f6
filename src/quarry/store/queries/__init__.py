"""Named SQL, kept as SQL (procrastinate style) and loaded by name.

Each ``*.sql`` file in this package holds blocks that start with a header line
``-- name: what it does``; the block's text up to the next header is the query.
Parameters are always bound (``:param``), never formatted into the text. A block
whose name starts with ``_`` is a fragment, not a query: a line
``--@ include _name`` in another block is replaced by it, so a piece of SQL two
statements share (the fair pick of the next task) is written once. Bind
parameters whose names are listed in ``TYPED_PARAMS`` get a SQLAlchemy type, so
datetimes round-trip the same way on SQLite as the ORM-less Core tables write them.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.types import TypeEngine

from quarry.store.types import UtcDateTime

_HEADER = re.compile(r"^-- (?P<name>[a-z_][a-z0-9_]*):(?P<doc>.*)$")
_INCLUDE = re.compile(r"^\s*--@ include (?P<name>_[a-z0-9_]+)\s*$")

TYPED_PARAMS: dict[str, TypeEngine[Any]] = {
    "now": UtcDateTime(),
    "run_after": UtcDateTime(),
    "lease_until": UtcDateTime(),
    "cutoff": UtcDateTime(),
}


class UnknownQuery(KeyError):
    pass


def parse(source: str) -> dict[str, str]:
    """Split a file of named blocks into ``{name: sql}``."""
    queries: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []
    for line in source.splitlines():
        match = _HEADER.match(line)
        if match:
            if name is not None:
                queries[name] = "\n".join(lines).strip()
            name = match.group("name")
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice")
            lines = []
        elif name is not None:
            lines.append(line)
    if name is not None:
        queries[name] = "\n".join(lines).strip()
    fragments = {k: v for k, v in queries.items() if k.startswith("_")}
    return {k: _expand(k, v, fragments) for k, v in queries.items() if not k.startswith("_")}


def _expand(name: str, sql: str, fragments: dict[str, str]) -> str:
    out: list[str] = []
    for line in sql.splitlines():
        match = _INCLUDE.match(line)
        if match is None:
            out.append(line)
            continue
        fragment = fragments.get(match.group("name"))
        if fragment is None:
            raise ValueError(f"query {name!r} includes unknown fragment {match.group('name')!r}")
        out.append(fragment)
    return "\n".join(out)


@cache
def load(file: str) -> dict[str, str]:
    source = resources.files(__package__).joinpath(file).read_text(encoding="utf-8")
    return parse(source)


@cache
def query(file: str, name: str) -> TextClause:
    """The named query as a ``TextClause`` with typed bind parameters."""
    try:
        sql = load(file)[name]
    except KeyError:
        raise UnknownQuery(f"no query named {name!r} in {file}") from None
    clause = text(sql)
    typed = [bindparam(p, type_=t) for p, t in TYPED_PARAMS.items() if p in clause._bindparams]
    if typed:
        clause = clause.bindparams(*typed)
    return clause


def sql_text(file: str, name: str) -> str:
    return load(file)[name]
