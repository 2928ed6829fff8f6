"""View expressions (``expr:``, ``sql:``, filters) as qualified sqlglot trees.

A view's expressions are SQL fragments over its own columns (``amount``,
``{{TABLE}}.amount``). Compiling a query joins several views, so every bare column
is qualified with its view's alias; ``{{variables.x}}`` becomes a bound parameter
and ``{{view.measure}}`` (in ``number``/``custom`` measures) the referenced
measure's aggregate. Parsing happens once per (dialect, text) and is memoised on
the model; each use gets a copy.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from quarry.definitions.semantic_rules import (
    REF_PREFIX,
    TABLE_PLACEHOLDER,
    VARIABLE_PREFIX,
    template_free,
)
from quarry.semantic.errors import SemanticError

_MEMBER_REF = re.compile(r"\{\{\s*([A-Za-z_]\w*)\.([A-Za-z_]\w*)\s*\}\}")
_TABLE_NAME = TABLE_PLACEHOLDER
_VARIABLE_PREFIX = VARIABLE_PREFIX
_REF_PREFIX = REF_PREFIX
_FILE_SUFFIXES = (".csv", ".parquet", ".json", ".jsonl", ".ndjson", ".tsv", ".csv.gz")
_template_free = template_free


def parse_fragment(text: str, dialect: str, where: str) -> exp.Expr:
    """Parse one expression; a :class:`SemanticError` naming ``where`` if it is not one."""
    try:
        parsed = sqlglot.parse_one(_template_free(text), read=dialect)
    except (ParseError, ValueError) as exc:
        raise SemanticError(f"{where}: not a valid SQL expression: {_first_line(exc)}") from None
    if isinstance(parsed, (exp.Query, exp.Command)) and not isinstance(parsed, exp.Select):
        raise SemanticError(f"{where}: expected an expression, not a statement")
    return parsed


def parse_query(text: str, dialect: str, where: str) -> exp.Query:
    try:
        parsed = sqlglot.parse_one(_template_free(text), read=dialect)
    except (ParseError, ValueError) as exc:
        raise SemanticError(f"{where}: not a valid SELECT: {_first_line(exc)}") from None
    if not isinstance(parsed, exp.Query):
        raise SemanticError(f"{where}: expected a SELECT statement")
    return parsed


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def references(text: str) -> list[tuple[str, str]]:
    """``{{a.b}}`` references of ``text`` other than ``{{variables.x}}``."""
    return [(a, b) for a, b in _MEMBER_REF.findall(text) if a != "variables"]


def qualify(
    tree: exp.Expr,
    alias: str,
    *,
    variable: Callable[[str], exp.Expr],
    reference: Callable[[str, str], exp.Expr] | None = None,
    columns: bool = True,
) -> exp.Expr:
    """A copy of ``tree`` with bare columns on ``alias`` and templates resolved.

    ``columns=False`` resolves the templates only (a view's own ``sql:``, whose
    columns belong to its own FROM).
    """

    def swap(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Column):
            return node
        name = node.name
        if name.startswith(_VARIABLE_PREFIX) and not node.table:
            return variable(name[len(_VARIABLE_PREFIX) :])
        if name.startswith(_REF_PREFIX) and not node.table:
            view, _, member = name[len(_REF_PREFIX) :].partition("__")
            if reference is None:
                raise SemanticError(
                    f"'{{{{{view}.{member}}}}}': references to other views' fields are only "
                    "supported in number/custom measures; query that field directly"
                )
            return exp.Paren(this=reference(view, member))
        if node.table == _TABLE_NAME:
            return exp.column(node.this.copy(), table=exp.to_identifier(alias, quoted=True))
        if not node.table and columns:
            return exp.column(node.this.copy(), table=exp.to_identifier(alias, quoted=True))
        return node

    return tree.copy().transform(swap, copy=False)


def table_source(table: str, dialect: str) -> exp.Expr:
    """``table:`` as a FROM item: dotted names split, file paths kept whole."""
    lowered = table.lower()
    if "/" in table or lowered.endswith(_FILE_SUFFIXES):
        return exp.Table(this=exp.to_identifier(table, quoted=True))
    try:
        return exp.to_table(table, dialect=dialect)
    except (ParseError, ValueError):
        return exp.Table(this=exp.to_identifier(table, quoted=True))
