"""SQL written by a model runs read-only, whatever it says.

Two locks, so that either alone would hold:

* the statement: exactly one, and a query (``SELECT``/``WITH``/set operations; DuckDB's
  own parser, sqlglot for Postgres) — ``DROP``, ``COPY``, ``ATTACH``, ``SET``,
  ``PRAGMA``, ``CALL`` are refused before anything runs;
* the database, in its own read-only mode (the connector's, for a statement marked
  ``BoundSql.read_only``): Postgres ``BEGIN READ ONLY`` with a ``statement_timeout``,
  rolled back (a data-modifying CTE or ``SELECT ... INTO`` fails there); MySQL and
  MariaDB ``START TRANSACTION READ ONLY``, rolled back; ClickHouse ``readonly=1`` (no
  write, no setting changed, Oxy's filters included) with ``max_execution_time``;
  BigQuery a dry run first, refusing what it does not plan as a ``SELECT``; DuckDB
  the run's sandboxed connection. Snowflake has no read-only session: there, and on
  every database, the query runs as ``SELECT * FROM (...)``, where no write parses.
  Domo's query API only reads.

Every statement is interrupted at the timeout (the connector's server-side cancel).

The query is wrapped in ``SELECT * FROM (...) LIMIT cap + 1``: at most ``cap`` rows
are fetched, and one more says that there were more.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from quarry.agents.tools.base import ToolFailed
from quarry.runtime.connectors.base import BoundSql, Connector, ConnectorError

_DUCKDB_QUERIES = (duckdb.StatementType.SELECT,)


@dataclass(frozen=True)
class SqlLimits:
    row_cap: int = 1000
    """Rows fetched from the database at most."""
    rows_shown: int = 50
    """Rows the model reads at most (the rest is said to be cut)."""
    chars_shown: int = 8000
    timeout: float = 30.0
    """Seconds a statement may run."""


def read_only_query(sql: str, dialect: str) -> str:
    """``sql`` as one query without a trailing ``;``, or :class:`ToolFailed` saying why not."""
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise ToolFailed("the SQL is empty")
    if dialect == "duckdb":
        try:
            statements = duckdb.extract_statements(text)
        except duckdb.Error as exc:
            raise ToolFailed(f"the SQL cannot be parsed: {str(exc).strip()}") from None
        types = [statement.type for statement in statements]
        is_query = len(types) == 1 and types[0] in _DUCKDB_QUERIES
        kinds = [t.name for t in types]
    else:
        try:
            parsed = [e for e in sqlglot.parse(text, read=dialect) if e is not None]
        except SqlglotError as exc:
            raise ToolFailed(f"the SQL cannot be parsed: {str(exc).strip()[:300]}") from None
        kinds = [type(e).__name__.upper() for e in parsed]
        is_query = len(parsed) == 1 and isinstance(parsed[0], exp.Query)
    kind = kinds[0] if kinds else "nothing"
    if len(kinds) > 1:
        raise ToolFailed(
            f"the SQL holds {len(kinds)} statements; send one read-only query at a time"
        )
    if not is_query:
        raise ToolFailed(
            f"refused: only read-only queries (SELECT, WITH ... SELECT) run here, and this "
            f"statement is {kind}; the database is read-only for this agent"
        )
    return text


def run_read_only(connector: Connector, query: str, limits: SqlLimits) -> pa.Table:
    """Run a checked query (:func:`read_only_query`) read-only, capped, under the timeout.
    Blocking: call it on a thread."""
    capped = f"SELECT * FROM (\n{query}\n) AS agent_query LIMIT {limits.row_cap + 1}"
    timer = threading.Timer(limits.timeout, connector.interrupt)
    timer.daemon = True
    timer.start()
    try:
        return connector.query(_read_only(capped, limits))
    except ConnectorError as exc:
        if not timer.is_alive():
            raise ToolFailed(
                f"the query ran longer than {limits.timeout:g}s and was stopped"
            ) from None
        raise ToolFailed(f"the database refused the query: {exc.message}") from None
    finally:
        timer.cancel()


def explain_read_only(connector: Connector, query: str, limits: SqlLimits) -> None:
    """Plan the query without running it (``validate_sql``); ConnectorError if invalid.
    BigQuery has no ``EXPLAIN``: its dry run plans the query."""
    if connector.dialect == "bigquery":
        connector.query(_read_only(query, limits, plan_only=True))
    else:
        connector.query(_read_only(f"EXPLAIN {query}", limits))


def _read_only(text: str, limits: SqlLimits, *, plan_only: bool = False) -> BoundSql:
    """The statement marked read-only: each connector runs it in its database's own
    read-only mode (``BoundSql.read_only``)."""
    extra: dict[str, object] = {"read_only": limits.timeout}
    if plan_only:
        extra["plan_only"] = True
    return BoundSql(text, extra=extra)
