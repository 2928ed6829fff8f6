"""``execute_sql``: render the SQL (inline or from a ``.sql`` file) and run it.

The rendered SQL must hold one statement unless the task sets
``multiple_statements: true`` (see :mod:`quarry.runtime.engine.statements`); the
statement runs under the run's watchdog, so a timeout or a cancel interrupts it.
"""

from __future__ import annotations

from typing import Any

from quarry.core.errors import NotFound
from quarry.definitions.models.tasks import ExecuteSqlTask
from quarry.runtime.engine.context import RunContext, Scope
from quarry.runtime.engine.errors import SqlFailed, TemplateFailed, TooManyStatements
from quarry.runtime.engine.exports import deliver
from quarry.runtime.engine.results import StepResult, TableOutput
from quarry.runtime.engine.statements import UnreadableSql, count_statements
from quarry.runtime.engine.templating import TemplateProblem, evaluate, render_sql, render_text


def _sql_text(ctx: RunContext, task: ExecuteSqlTask, names: dict[str, Any]) -> str:
    if task.sql_query is not None:
        return task.sql_query
    assert task.sql_file is not None
    # A templated path (``queries/{{ kind }}.sql``) is only known at run time.
    path = render_text(task.sql_file, names).strip()
    try:
        data = ctx.source.file_bytes(path)
    except (NotFound, ValueError) as exc:
        raise SqlFailed(f"sql_file {path!r} is not in revision {ctx.source.revision_id}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SqlFailed(f"sql_file {path!r} is not UTF-8 text") from exc


def run(ctx: RunContext, task: ExecuteSqlTask, scope: Scope, key: str) -> StepResult:
    names = scope.template_context()
    try:
        if task.variables:
            names.update(evaluate(dict(task.variables), names))
        source = _sql_text(ctx, task, names)
        bound = render_sql(source, names)
        database = render_text(task.database, names).strip()
    except TemplateProblem as exc:
        raise TemplateFailed(str(exc)) from exc
    connector = ctx.connections.get(database)
    shown = bound.display()
    if not task.multiple_statements:
        _one_statement(shown, connector.dialect)
    table = ctx.query(connector, bound, key, task.name)
    output = TableOutput(table)
    meta = {
        "database": database,
        "sql": shown,
        "rows": table.num_rows,
        "exports": deliver(ctx, task.export, scope, output, sql=shown),
    }
    return StepResult(output, meta)


def _one_statement(sql: str, dialect: str) -> None:
    try:
        count = count_statements(sql, dialect)
    except UnreadableSql as exc:
        raise SqlFailed(f"the SQL cannot be read as {dialect} SQL: {exc}") from exc
    if count > 1:
        raise TooManyStatements(
            f"the SQL holds {count} statements and an execute_sql task runs one (a value "
            "spliced into the SQL can end a statement: put values in with '| param' or "
            "'| sqlquote'); a task that means to run several sets 'multiple_statements: true'",
            statements=count,
        )
