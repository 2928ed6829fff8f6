"""How many statements a rendered SQL text holds, read the way its database reads it.

An ``execute_sql`` task runs one statement unless it opts in to several
(``multiple_statements: true``): a value spliced into the SQL (``'{{ region }}'``)
that closes its quote could otherwise stack a second statement (``x'; COPY ... TO
'/tmp/f'; --``). The count must agree with the database's own lexer, or a value
could hide a ``;`` from the check that the database then honours:

* DuckDB: DuckDB's own parser (``duckdb.extract_statements``), exactly.
* other databases: sqlglot's tokenizer for the dialect (quotes, ``E''`` escapes,
  dollar quoting, comments). Where it and the server could differ (Postgres with
  ``standard_conforming_strings`` off reads ``\\'`` inside a string as an escaped
  quote) sqlglot sees *more* statements, never fewer, so the check errs on refusing.
"""

from __future__ import annotations

import duckdb


class UnreadableSql(Exception):
    """The SQL could not be split into statements; ``str()`` says why."""


_SQLGLOT_DIALECTS = {"postgres": "postgres", "duckdb": "duckdb", "mysql": "mysql"}


def count_statements(text: str, dialect: str) -> int:
    """Non-empty statements in ``text`` (bound values as ``$1`` placeholders)."""
    if dialect == "duckdb":
        try:
            return len(duckdb.extract_statements(text))
        except duckdb.Error as exc:
            raise UnreadableSql(str(exc).strip()) from exc
    # sqlglot (~90 ms to import) only for the databases DuckDB's parser does not read.
    import sqlglot
    from sqlglot import TokenType
    from sqlglot.errors import SqlglotError

    try:
        tokens = sqlglot.tokenize(text, read=_SQLGLOT_DIALECTS.get(dialect))
    except SqlglotError as exc:
        raise UnreadableSql(str(exc).strip()) from exc
    statements = 0
    pending = False
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            statements += pending
            pending = False
        else:
            pending = True
    return statements + pending
