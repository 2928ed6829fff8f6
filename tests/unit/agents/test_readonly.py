"""Which statements a model's SQL may be: one query, read with the database's parser."""

from __future__ import annotations

import pytest

from quarry.agents.tools.base import ToolFailed
from quarry.agents.tools.readonly import read_only_query

QUERIES = [
    "SELECT 1",
    "select * from t;",
    "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
    "SELECT 1 UNION ALL SELECT 2",
    "  SELECT 'a;b' AS semi  ;  ",
]

REFUSED = [
    "DROP TABLE t",
    "DELETE FROM t",
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET x = 1",
    "CREATE TABLE u AS SELECT 1",
    "COPY t TO '/tmp/out.csv'",
    "SET search_path = evil",
]


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
@pytest.mark.parametrize("sql", QUERIES)
def test_queries_pass_without_their_trailing_semicolon(dialect: str, sql: str) -> None:
    checked = read_only_query(sql, dialect)
    assert not checked.endswith(";") and checked == checked.strip()


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
@pytest.mark.parametrize("sql", REFUSED)
def test_writes_are_refused_naming_the_statement(dialect: str, sql: str) -> None:
    with pytest.raises(ToolFailed, match="refused: only read-only queries"):
        read_only_query(sql, dialect)


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
def test_stacked_and_empty_statements(dialect: str) -> None:
    with pytest.raises(ToolFailed, match="holds 2 statements"):
        read_only_query("SELECT 1; DROP TABLE t", dialect)
    with pytest.raises(ToolFailed, match=r"holds \d statements"):  # a quoted ; is no end
        read_only_query("SELECT 'x'';'; DROP TABLE t; --", dialect)
    with pytest.raises(ToolFailed, match="empty"):
        read_only_query(" ; ", dialect)


def test_duckdb_specific_statements_are_refused() -> None:
    for sql in (
        "PRAGMA enable_profiling",
        "ATTACH 'x.db' AS x",
        "CALL pragma_version()",
        "INSTALL httpfs",
        "LOAD httpfs",
        "EXPORT DATABASE '/tmp/x'",
    ):
        with pytest.raises(ToolFailed, match="refused"):
            read_only_query(sql, "duckdb")
