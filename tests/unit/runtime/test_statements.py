"""Counting statements the way the database's lexer reads them: a value spliced
into a quoted string must not hide a ``;`` from the check, nor add one."""

from __future__ import annotations

import pytest

from quarry.runtime.engine.statements import UnreadableSql, count_statements

STACKED = "SELECT 1 FROM t WHERE r = 'x'; COPY (SELECT 1) TO '/tmp/pwn.csv'; --'"


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
@pytest.mark.parametrize(
    ("sql", "count"),
    [
        ("SELECT 1", 1),
        ("SELECT 1;", 1),
        ("SELECT 1;;  ", 1),
        ("-- only a comment", 0),
        (STACKED, 2),
        ("SELECT 1; SELECT 2", 2),
        # ';' inside strings, quoted names, comments and dollar quotes is not an end
        ("SELECT 'a;b', \"odd;name\" FROM t", 1),
        ("SELECT 1 /* ; */ -- ;\n", 1),
        ("SELECT $$a;b$$", 1),
        ("SELECT $tag$a;b$tag$", 1),
        ("SELECT $1, $2", 1),
        # A backslash does not escape a quote in a standard string: the value
        # x\'; ... still closes the string and stacks a statement.
        ("SELECT 'x\\'; COPY t TO '/tmp/f'; --'", 2),
        # In an E'' string it does: this is one statement.
        ("SELECT E'a\\'; b'", 1),
    ],
)
def test_count_statements(dialect: str, sql: str, count: int) -> None:
    assert count_statements(sql, dialect) == count


def test_duckdb_sql_that_does_not_parse_is_reported() -> None:
    with pytest.raises(UnreadableSql, match="unterminated"):
        count_statements("SELECT 'x", "duckdb")
