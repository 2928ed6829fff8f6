"""``execute_sql`` and ``validate_sql``: Oxy's SQL tools, read-only.

Same names, descriptions and arguments as Oxy's (``sql``, also accepted as
``query``; ``persist`` is accepted and has no effect yet). The model's SQL goes
through :mod:`quarry.agents.tools.readonly`; the result it reads is a small text
table, cut at :class:`SqlLimits` with the cut said, so it never answers from rows it
did not see as if they were all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Generic, TypeVar

import pyarrow as pa

from quarry.agents.providers.base import ToolSpec
from quarry.agents.tools.base import ToolFailed, ToolOutcome
from quarry.agents.tools.readonly import (
    SqlLimits,
    explain_read_only,
    read_only_query,
    run_read_only,
)
from quarry.definitions.models.agent import ExecuteSqlTool, ValidateSqlTool
from quarry.runtime.connectors.base import Connector, ConnectorError
from quarry.runtime.connectors.registry import Connections

EXECUTE_SQL_DESCRIPTION = "Execute the SQL query. If the query is invalid, fix it and run again."
VALIDATE_SQL_DESCRIPTION = "Validate the SQL query. If the query is invalid, fix it and run again."
_CELL_CHARS = 200

StatementGuard = Callable[[Connector], AbstractContextManager[Any]]
"""Wraps each statement, e.g. a run's watchdog (so a cancel or the run's deadline
interrupts the agent's SQL as it does a task's)."""


def unguarded(_connector: Connector) -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


def sql_parameters(*, persist: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {"sql": {"type": "string"}}
    if persist:
        properties["persist"] = {
            "type": "boolean",
            "default": False,
            "description": "Enable when needed to build data apps or charts based on the "
            "query result.",
        }
    return {"type": "object", "properties": properties, "required": ["sql"]}


def _sql_argument(arguments: dict[str, Any]) -> str:
    sql = arguments.get("sql", arguments.get("query"))
    if not isinstance(sql, str):
        raise ToolFailed("the arguments must hold 'sql': the SQL query as a string")
    return sql


_Config = TypeVar("_Config", ExecuteSqlTool, ValidateSqlTool)


class _SqlTool(Generic[_Config]):
    """What both SQL tools share: their spec from the config (Oxy's stock name and
    sentence where it gives none), the connection and the guarded, read-only statement."""

    default_name: ClassVar[str]
    default_description: ClassVar[str]
    persist: ClassVar[bool]

    def __init__(
        self,
        config: _Config,
        connections: Connections,
        limits: SqlLimits,
        guard: StatementGuard | None = None,
    ) -> None:
        self.database = config.database
        self.connections = connections
        self.limits = limits
        self.guard = guard or unguarded
        self.spec = ToolSpec(
            config.name or self.default_name,
            config.description or self.default_description,
            sql_parameters(persist=self.persist),
        )

    async def _query(self, arguments: dict[str, Any]) -> tuple[Connector, str]:
        """The connector and the model's SQL, checked read-only in its dialect."""
        sql = _sql_argument(arguments)
        connector = await asyncio.to_thread(self._connector)
        return connector, read_only_query(sql, connector.dialect)

    def _connector(self) -> Connector:
        try:
            return self.connections.get(self.database)
        except ConnectorError as exc:
            raise ToolFailed(f"cannot open database {self.database!r}: {exc.message}") from None
        except Exception as exc:  # UnknownDatabase and other QuarryErrors carry a message
            raise ToolFailed(str(exc)) from None

    def _run(self, connector: Connector, query: str) -> pa.Table:
        with self.guard(connector):
            return run_read_only(connector, query, self.limits)

    def _explain(self, connector: Connector, query: str) -> None:
        with self.guard(connector):
            explain_read_only(connector, query, self.limits)


class ExecuteSql(_SqlTool[ExecuteSqlTool]):
    default_name = "execute_sql"
    default_description = EXECUTE_SQL_DESCRIPTION
    persist = True

    async def call(self, arguments: dict[str, Any]) -> ToolOutcome:
        connector, query = await self._query(arguments)
        table = await asyncio.to_thread(self._run, connector, query)
        text, detail = render_table(table, self.limits)
        return ToolOutcome(text, {"database": self.database, "sql": query, **detail})


class ValidateSql(_SqlTool[ValidateSqlTool]):
    default_name = "validate_sql"
    default_description = VALIDATE_SQL_DESCRIPTION
    persist = False

    async def call(self, arguments: dict[str, Any]) -> ToolOutcome:
        connector, query = await self._query(arguments)
        try:
            await asyncio.to_thread(self._explain, connector, query)
        except ConnectorError as exc:
            raise ToolFailed(f"the SQL is not valid: {exc.message}") from None
        return ToolOutcome("The SQL is valid.", {"database": self.database, "sql": query})


def render_table(table: pa.Table, limits: SqlLimits) -> tuple[str, dict[str, Any]]:
    """The rows as the model reads them (CSV-like, cut where the limits say, and saying
    so), and the facts for events."""
    more_than_cap = table.num_rows > limits.row_cap
    fetched = min(table.num_rows, limits.row_cap)
    shown = min(fetched, limits.rows_shown)
    lines = [",".join(table.column_names)]
    for row in table.slice(0, shown).to_pylist():
        lines.append(",".join(_cell(value) for value in row.values()))
    text = "\n".join(lines)
    cut_chars = len(text) > limits.chars_shown
    if cut_chars:
        text = text[: limits.chars_shown].rsplit("\n", 1)[0]
        shown = text.count("\n")
    truncated = more_than_cap or shown < fetched
    if truncated:
        total = f"more than {limits.row_cap}" if more_than_cap else str(fetched)
        text += (
            f"\n[The result was truncated: {shown} of {total} rows are shown. Aggregate in "
            "SQL, or filter, rather than reading every row.]"
        )
    else:
        text += f"\n[{fetched} rows]"
    detail = {"rows": fetched, "rows_shown": shown, "truncated": truncated}
    return text, detail


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    if len(text) > _CELL_CHARS:
        text = text[:_CELL_CHARS] + "..."
    if any(ch in text for ch in ',\n"'):
        text = '"' + text.replace('"', '""').replace("\n", " ") + '"'
    return text
