"""Single-file rules of views and topics (airlayer's ``validate``), with positions.

These need nothing but the file itself, so they run when the file is parsed and
report at its line like any schema error. Rules that need every view at once
(references between views, ambiguous join paths) are ``quarry.semantic``'s.

SQL fragments are checked with sqlglot in the dialects Quarry compiles for: a
fragment is only wrong if no dialect reads it, since the view's dialect comes from
config.yml, which this file cannot see.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from yaml.nodes import Node

from quarry.core.errors import Problem
from quarry.definitions.models.semantic import TopicConfig, ViewConfig
from quarry.definitions.yaml_nodes import locate, position

Loc = tuple[str | int, ...]

_TABLE_REF = re.compile(r"\{\{\s*TABLE\s*\}\}")
_VARIABLE_REF = re.compile(r"\{\{\s*variables\.([A-Za-z_]\w*)\s*\}\}")
_MEMBER_REF = re.compile(r"\{\{\s*([A-Za-z_]\w*)\.([A-Za-z_]\w*)\s*\}\}")
TABLE_PLACEHOLDER = "__quarry_table__"
VARIABLE_PREFIX = "__quarry_var__"
REF_PREFIX = "__quarry_ref__"
_READ_DIALECTS = ("duckdb", "postgres", "bigquery", "snowflake", "mysql", "clickhouse")
# Tried in this order: sqlglot's postgres dialect loads in a sixth of the time of its
# duckdb one (~4 vs ~23 ms, once per compile process), and reads what authors write
# in views; an error is still reported as the first dialect of _READ_DIALECTS says it.
_TRY_ORDER = ("postgres", "duckdb", "bigquery", "snowflake", "mysql", "clickhouse")


def template_free(text: str) -> str:
    """``{{TABLE}}``, ``{{variables.x}}`` and ``{{view.member}}`` as plain identifiers."""
    text = _TABLE_REF.sub(TABLE_PLACEHOLDER, text)
    text = _VARIABLE_REF.sub(lambda m: VARIABLE_PREFIX + m.group(1), text)
    return _MEMBER_REF.sub(lambda m: f"{REF_PREFIX}{m.group(1)}__{m.group(2)}", text)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


@functools.cache
def _keywords() -> frozenset[str]:
    """sqlglot (~90 ms to import) is loaded by the first view checked, not by every
    process that imports the definitions (``quarry run`` of a workflow never needs it)."""
    import sqlglot

    return frozenset(sqlglot.tokens.Tokenizer.KEYWORDS)


def warm() -> None:
    """Load what checking a view needs (sqlglot and its postgres dialect) now.

    The compile process calls this before it says ready: its per-file time limit must
    measure the file, not the one-time import of a parser (0.1-0.4 s), which would
    otherwise be charged to whichever view happens to be read first."""
    _keywords()
    sql_error("1 + 1")


@functools.lru_cache(maxsize=8192)
def sql_error(text: str, *, query: bool = False) -> str | None:
    """Why no dialect reads ``text`` as an expression (or a SELECT), or None.

    Every compile checks every dimension and measure expression of every changed
    view, and most are a column name (``amount``, ``orders.id``) that every dialect
    reads: those skip sqlglot (unless a part is a keyword), and answers are
    remembered by text, since views repeat the same expressions."""
    plain = text.strip()
    if (
        not query
        and _IDENTIFIER.fullmatch(plain)
        and not any(part.upper() in _keywords() for part in plain.split("."))
    ):
        return None
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    errors: dict[str, str] = {}
    for dialect in _TRY_ORDER:
        try:
            parsed = sqlglot.parse_one(template_free(text), read=dialect)
        except (ParseError, ValueError) as exc:
            lines = str(exc).strip().splitlines()
            errors[dialect] = lines[0] if lines else type(exc).__name__
            continue
        if query and not isinstance(parsed, exp.Query):
            return "expected a SELECT statement"
        if (
            not query
            and isinstance(parsed, (exp.Query, exp.Command))
            and not isinstance(parsed, exp.Select)
        ):
            return "expected an expression, not a statement"
        return None
    return next((errors[d] for d in _READ_DIALECTS if d in errors), None)


def view_rule_problems(view: ViewConfig) -> Iterator[tuple[Loc, str]]:
    if view.table is None and view.sql is None:
        yield ("name",), "a view needs either 'table' or 'sql'"
    if view.table is not None and view.sql is not None:
        yield ("sql",), "a view cannot have both 'table' and 'sql'"
    if view.sql is not None and (error := sql_error(view.sql, query=True)):
        yield ("sql",), f"not a valid SELECT: {error}"
    for i, dim in enumerate(view.dimensions):
        if not dim.expr.strip():
            yield ("dimensions", i, "expr"), f"dimension '{dim.name}' has an empty expr"
        elif error := sql_error(dim.expr):
            yield ("dimensions", i, "expr"), f"not a valid SQL expression: {error}"
    for i, measure in enumerate(view.measures or []):
        if measure.type != "count" and not measure.expr:
            yield (
                ("measures", i),
                f"measure '{measure.name}' of type {measure.type} needs an expr",
            )
        if measure.expr and (error := sql_error(measure.expr)):
            yield ("measures", i, "expr"), f"not a valid SQL expression: {error}"
        for j, f in enumerate(measure.filters or []):
            if error := sql_error(f.expr):
                yield (
                    ("measures", i, "filters", j, "expr"),
                    f"not a valid SQL expression: {error}",
                )
    # airlayer also demands that entity keys name dimensions; Oxy's own views often
    # name columns instead, and Quarry joins on either (a dimension of that name
    # if there is one, else the column), so that rule is not applied.
    for i, entity in enumerate(view.entities):
        if not (entity.keys or entity.key):
            yield ("entities", i), f"entity '{entity.name}' needs 'key' or 'keys'"


def topic_rule_problems(topic: TopicConfig) -> Iterator[tuple[Loc, str]]:
    if topic.base_view is not None and topic.base_view not in topic.views:
        yield ("base_view",), f"base view '{topic.base_view}' is not one of the topic's views"
    fields: list[tuple[Loc, str]] = [
        (("default_filters", i, "field"), f.field)
        for i, f in enumerate(topic.default_filters or [])
    ]
    if topic.security is not None:
        fields += [
            (("security", "row_filters", i, "member"), r.member)
            for i, r in enumerate(topic.security.row_filters)
        ]
    for loc, name in fields:
        view = name.split(".", 1)[0] if "." in name else topic.name
        if view not in topic.views:
            yield loc, f"'{name}' is not a field of the topic's views ({', '.join(topic.views)})"


def semantic_file_problems(path: str, root: Node, model: ViewConfig | TopicConfig) -> list[Problem]:
    """The rules above as positioned problems of the file at ``path``."""
    found = (
        view_rule_problems(model) if isinstance(model, ViewConfig) else topic_rule_problems(model)
    )
    problems = []
    for loc, message in found:
        line, column = position(locate(root, loc).node)
        problems.append(Problem(path, line, column, message))
    return problems
