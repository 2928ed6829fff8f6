"""SQL written by a model runs read-only, whatever it says.

Two locks, so that either alone would hold:

* the statement: exactly one, and a query (``SELECT``/``WITH``/set operations; DuckDB's
  own parser, sqlglot for Postgres) — ``DROP``, ``COPY``, ``ATTACH``, ``SET``,
  ``PRAGMA``, ``CALL`` are refused before anything runs;
* the database: Postgres runs it inside ``BEGIN READ ONLY`` with a ``statement_timeout``
  and rolls back (a data-modifying CTE or ``SELECT ... INTO`` fails there); DuckDB
  runs it in the run's sandboxed connection, interrupted at the timeout.

The query is wrapped in ``SELECT * FROM (...) LIMIT cap + 1``: at most ``cap`` rows
are fetched, and one more says that there were more.
"""

from __future__ import annotations

import contextlib
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
        if connector.dialect == "postgres":
            return _postgres(connector, capped, limits)
        if connector.dialect == "duckdb":
            return connector.query(BoundSql(capped))
        raise ToolFailed(f"databases of type {connector.dialect} are not supported by agents yet")
    except ConnectorError as exc:
        if not timer.is_alive():
            raise ToolFailed(
                f"the query ran longer than {limits.timeout:g}s and was stopped"
            ) from None
        raise ToolFailed(f"the database refused the query: {exc.message}") from None
    finally:
        timer.cancel()


def explain_read_only(connector: Connector, query: str, limits: SqlLimits) -> None:
    """Plan the query without running it (``validate_sql``); ConnectorError if invalid."""
    if connector.dialect == "postgres":
        _postgres(connector, f"EXPLAIN {query}", limits)
    else:
        connector.query(BoundSql(f"EXPLAIN {query}"))


def _postgres(connector: Connector, sql: str, limits: SqlLimits) -> pa.Table:
    # One connection per thread in the connector: the three calls share it.
    millis = max(1, int(limits.timeout * 1000))
    try:
        return connector.query(
            BoundSql(f"BEGIN READ ONLY; SET LOCAL statement_timeout = {millis}; {sql}")
        )
    finally:
        with contextlib.suppress(ConnectorError):  # a broken connection has no transaction
            connector.query(BoundSql("ROLLBACK"))
