"""Correctness by SQL results: a test case's ``expected_sql`` against the answer's SQL.

Judging an answer's text says whether it *reads* right; comparing result tables says
whether the numbers behind it are right, with no judge model. The answer's SQL is the
last successful ``execute_sql`` call of its turn (read from the turn's events); it and
the expected query run again **read-only** (:mod:`quarry.agents.tools.readonly`) on
the agent's database, and the run is correct when the two tables are equal:

* the same number of columns (their names are ignored: ``total`` and ``sum(amount)``
  are the same answer) and the same rows;
* rows in any order, unless the expected query ends with ``ORDER BY`` (then in its
  order);
* numbers equal within a relative tolerance of 1e-6 (``Decimal('10.50')``, ``10.5``
  and ``10.500000001`` are equal; an integer column equals a float one);
* at most :data:`COMPARE_ROWS` rows: a bigger result is not compared (the run is not
  correct, and the reason says why).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from quarry.agents.tools.base import ToolFailed
from quarry.agents.tools.readonly import SqlLimits, read_only_query, run_read_only
from quarry.definitions.models.agent import ExecuteSqlTool
from quarry.runtime.connectors.registry import Connections

COMPARE_ROWS = 10_000
REL_TOL = 1e-6
ABS_TOL = 1e-9
_LIMITS = SqlLimits(row_cap=COMPARE_ROWS, timeout=60.0)


@dataclass(frozen=True)
class ExecutedSql:
    database: str
    sql: str


@dataclass(frozen=True)
class SqlVerdict:
    equal: bool
    reason: str
    sql: str | None

    def to_json(self) -> dict[str, Any]:
        return {"equal": self.equal, "reason": self.reason, "sql": self.sql}


class ExpectedSqlFailed(Exception):
    """The case's own ``expected_sql`` does not run: the test is wrong, not the agent."""


def last_executed_sql(events: Sequence[dict[str, Any]]) -> ExecutedSql | None:
    """The turn's last successful ``execute_sql`` call: a tool result carrying its SQL
    and row count and no error (``validate_sql`` results carry no rows)."""
    found = None
    for event in events:
        if (
            event.get("type") == "tool_result"
            and "error" not in event
            and isinstance(event.get("sql"), str)
            and "rows" in event
        ):
            found = ExecutedSql(str(event.get("database", "")), event["sql"])
    return found


def agent_database(tools: Sequence[Any]) -> str | None:
    """The database of the agent's first ``execute_sql`` tool (where the expected query
    runs when the answer ran none)."""
    for tool in tools:
        if isinstance(tool, ExecuteSqlTool):
            return tool.database
    return None


def ordered(sql: str, dialect: str) -> bool:
    """Whether the query's outermost statement has an ``ORDER BY``."""
    try:
        parsed = sqlglot.parse_one(sql, read=dialect)
    except SqlglotError:
        return False
    return isinstance(parsed, exp.Expression) and parsed.args.get("order") is not None


def _run(connections: Connections, database: str, sql: str) -> tuple[pa.Table, str]:
    connector = connections.get(database)
    query = read_only_query(sql, connector.dialect)
    return run_read_only(connector, query, _LIMITS), connector.dialect


async def expected_result(
    connections: Connections, database: str, sql: str
) -> tuple[pa.Table, bool]:
    """The expected table and whether its order counts; ExpectedSqlFailed when the
    query is refused, fails or is too big to compare."""
    try:
        table, dialect = await asyncio.to_thread(_run, connections, database, sql)
    except ToolFailed as exc:
        raise ExpectedSqlFailed(f"expected_sql on {database!r}: {exc}") from None
    except Exception as exc:  # unknown database, connection refused: the message says
        raise ExpectedSqlFailed(f"expected_sql on {database!r}: {exc}") from None
    if table.num_rows > COMPARE_ROWS:
        raise ExpectedSqlFailed(f"expected_sql returns more than {COMPARE_ROWS} rows")
    return table, ordered(sql, dialect)


async def check_answer(
    connections: Connections,
    executed: ExecutedSql | None,
    expected: pa.Table,
    in_order: bool,
) -> SqlVerdict:
    """Run the answer's SQL again, read-only, and compare its table with ``expected``."""
    if executed is None:
        return SqlVerdict(False, "the answer ran no successful execute_sql", None)
    try:
        table, _ = await asyncio.to_thread(_run, connections, executed.database, executed.sql)
    except Exception as exc:
        return SqlVerdict(False, f"the answer's SQL failed when run again: {exc}", executed.sql)
    if table.num_rows > COMPARE_ROWS:
        return SqlVerdict(
            False, f"the answer's SQL returns more than {COMPARE_ROWS} rows", executed.sql
        )
    equal, reason = tables_equal(table, expected, in_order=in_order)
    return SqlVerdict(equal, reason, executed.sql)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    return None


def _same(a: Any, b: Any) -> bool:
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        return math.isclose(x, y, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return bool(a == b)


def _key(value: Any) -> tuple[int, Any]:
    """A sort key over mixed cells; numbers rounded so near-equal values sort alike."""
    if value is None:
        return (0, 0)
    number = _number(value)
    if number is not None:
        return (1, 0.0 if math.isnan(number) else float(f"{number:.5g}"))
    if isinstance(value, str):
        return (2, value)
    return (3, str(value))


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return list(zip(*columns, strict=True)) if columns else []


def tables_equal(actual: pa.Table, expected: pa.Table, *, in_order: bool) -> tuple[bool, str]:
    """Equal as this module's docstring says, with the first difference as the reason."""
    if actual.num_columns != expected.num_columns:
        return False, f"{actual.num_columns} columns, expected {expected.num_columns}"
    if actual.num_rows != expected.num_rows:
        return False, f"{actual.num_rows} rows, expected {expected.num_rows}"
    got, want = _rows(actual), _rows(expected)
    if not in_order:
        got = sorted(got, key=lambda row: tuple(_key(v) for v in row))
        want = sorted(want, key=lambda row: tuple(_key(v) for v in row))
    for index, (a, b) in enumerate(zip(got, want, strict=True)):
        if not all(_same(x, y) for x, y in zip(a, b, strict=True)):
            where = f"row {index + 1}" if in_order else "a row"
            return False, f"{where} differs: {list(a)!r}, expected {list(b)!r}"
    return True, f"equal ({len(want)} rows)"
