"""Exports: a step's output as file bytes, handed to the caller to store.

The engine never writes files itself. For each ``export`` it renders the target
``path`` (a template, so a loop can write one file per value), checks that it stays
inside the workspace, encodes the output and calls ``on_export(path, data, format)``;
the caller puts the bytes in the object store and, for a run inside a working copy,
at ``path`` too. Formats: ``csv``, ``parquet``, ``json`` (an array of row objects),
``txt`` (a text, or a table as Markdown), ``sql`` (the SQL the step ran) and ``docx``
(a Word document of a text or a table, :mod:`quarry.runtime.engine.export_docx`).

As in Oxy, an export that fails (a path that leaves the workspace or does not render,
a format the output cannot take, storage refusing the file) does not fail its step:
the step succeeds with its output, a ``step_warning`` event says what went wrong, and
the step's ``exports`` facts carry the error.
"""

from __future__ import annotations

import base64
import io
import json
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa

from quarry.definitions.models.common import TaskExport
from quarry.runtime.engine.context import RunContext, Scope
from quarry.runtime.engine.errors import ExportFailed
from quarry.runtime.engine.results import MapOutput, Output, TableOutput, TextOutput
from quarry.runtime.engine.templating import TemplateProblem, render_text
from quarry.runtime.engine.views import markdown_table
from quarry.runtime.source import normalise_path

FORMATS = ("csv", "parquet", "json", "txt", "sql", "docx")


def encode_table(table: pa.Table, fmt: str) -> bytes:
    # The writers are imported by the format that needs them: python-docx (lxml) costs
    # ~80 ms and parquet ~12 ms on every `quarry run`, which mostly exports nothing.
    if fmt == "csv":
        import pyarrow.csv as pa_csv

        sink = io.BytesIO()
        pa_csv.write_csv(table, sink)
        return sink.getvalue()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()
    if fmt == "json":
        return json.dumps(table.to_pylist(), default=_json_default, ensure_ascii=False).encode()
    if fmt == "txt":
        return markdown_table(table).encode()
    if fmt == "docx":
        from quarry.runtime.engine.export_docx import table_docx

        return table_docx(table)
    raise ValueError(f"a table cannot be exported as {fmt!r}")


def encode_output(output: Output, fmt: str, *, sql: str | None = None) -> bytes:
    if fmt not in FORMATS:
        raise ExportFailed(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "sql":
        if sql is None:
            raise ExportFailed("only an execute_sql step can be exported as 'sql'")
        return sql.encode()
    if isinstance(output, MapOutput) and output.outputs:
        output = list(output.outputs.values())[-1]
    if isinstance(output, TableOutput):
        return encode_table(output.table, fmt)
    if isinstance(output, TextOutput):
        if fmt == "txt":
            return output.text.encode()
        if fmt == "json":
            return json.dumps(output.text, ensure_ascii=False).encode()
        if fmt == "docx":
            from quarry.runtime.engine.export_docx import text_docx

            return text_docx(output.text)
        raise ExportFailed(f"a text output cannot be exported as {fmt!r}; use txt, json or docx")
    raise ExportFailed("this step's output cannot be exported (export its tasks instead)")


def deliver(
    ctx: RunContext,
    export: TaskExport | None,
    scope: Scope,
    output: Output,
    *,
    sql: str | None = None,
) -> list[dict[str, Any]]:
    """Encode and hand over a step's export; the facts go in the step's ``meta``.

    Never raises for the export itself (Oxy's rule: a failed export warns): the
    facts then hold ``error`` and a ``step_warning`` event is emitted."""
    if export is None:
        return []
    path = export.path
    try:
        path = _export_path(export, scope)
        data = encode_output(output, export.format, sql=sql)
        if ctx.on_export is not None:
            # The caller's bookkeeping failing (its lease lost, the database gone) is
            # the run's problem: only ExportFailed and I/O errors from it warn.
            ctx.on_export(path, data, export.format)
    except ExportFailed as exc:
        message = exc.message
    except (ValueError, TypeError, OSError, pa.ArrowException) as exc:  # encoding
        message = f"{type(exc).__name__}: {exc}"
    else:
        return [{"path": path, "format": export.format, "size": len(data)}]
    step = scope.template_context().get("step") or {}
    ctx.emit(
        "step_warning",
        str(step.get("key", "")),
        warning="export_failed",
        message=f"export to {path!r} ({export.format}) failed: {message}",
        path=path,
        format=export.format,
    )
    return [{"path": path, "format": export.format, "error": message}]


def _export_path(export: TaskExport, scope: Scope) -> str:
    try:
        return normalise_path(render_text(export.path, scope.template_context()).strip())
    except TemplateProblem as exc:
        raise ExportFailed(f"export path: {exc}") from exc
    except ValueError as exc:
        raise ExportFailed(f"export path: {exc}") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)
