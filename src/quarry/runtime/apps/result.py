"""The document an app page renders: title, controls and display blocks in order.

A block whose data is missing (no such task output, or no such column) becomes an
``error`` on that block alone, so one broken chart never blanks the whole page.

Markdown ``content`` is a template rendered against the app's task results, as in a
workflow: ``{{ sales.total[0] }}``, ``{% for row in sales %}``, ``{{ controls.region }}``
(the same sandboxed engine; a block whose template fails shows the error instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from quarry.definitions.models.app import (
    AppConfig,
    BarChartDisplay,
    ControlDisplay,
    ControlsDisplay,
    Display,
    LineChartDisplay,
    MarkdownDisplay,
    PieChartDisplay,
    RowDisplay,
    TableDisplay,
)
from quarry.runtime.apps.charts import bar_spec, line_spec, pie_spec
from quarry.runtime.apps.controls import app_controls
from quarry.runtime.apps.values import column_kind, column_values, json_value
from quarry.runtime.engine.results import TableOutput
from quarry.runtime.engine.templating import TemplateProblem, render_text
from quarry.runtime.engine.views import to_view

RESULT_FORMAT = "quarry.app-result/1"
TABLE_ROW_LIMIT = 1_000
CHART_ROW_LIMIT = 5_000
OPTION_LIMIT = 1_000

Tables = dict[str, pa.Table]
Names = Mapping[str, Any]
ChartBlock = BarChartDisplay | LineChartDisplay | PieChartDisplay


class _MissingData(Exception):
    pass


def humanize(app_name: str) -> str:
    words = app_name.rsplit("/", 1)[-1].replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:]


def _table(tables: Tables, name: str, columns: list[str]) -> pa.Table:
    table = tables.get(name)
    if table is None:
        raise _MissingData(f"no task output named {name!r}")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise _MissingData(
            f"task output {name!r} has no column {missing[0]!r}; "
            f"its columns are {table.column_names}"
        )
    return table


def _table_block(block: TableDisplay, tables: Tables) -> dict[str, Any]:
    table = _table(tables, block.data, [])
    formats = block.formats or {}
    columns = [
        {"name": f.name, "kind": column_kind(f.type), "format": formats.get(f.name)}
        for f in table.schema
    ]
    values = [column_values(table, name, TABLE_ROW_LIMIT) for name in table.column_names]
    return {
        "type": "table",
        "title": block.title,
        "data": block.data,
        "columns": columns,
        "rows": [list(row) for row in zip(*values, strict=True)] if values else [],
        "row_count": table.num_rows,
        "truncated": table.num_rows > TABLE_ROW_LIMIT,
    }


def _chart_fields(block: ChartBlock) -> list[str]:
    if isinstance(block, PieChartDisplay):
        return [block.name, block.value]
    return [block.x, block.y] + ([block.series] if block.series else [])


def _chart_block(block: ChartBlock, tables: Tables) -> dict[str, Any]:
    fields = list(dict.fromkeys(_chart_fields(block)))
    table = _table(tables, block.data, fields)
    values = {name: column_values(table, name, CHART_ROW_LIMIT) for name in fields}
    rows = [dict(zip(fields, row, strict=True)) for row in zip(*values.values(), strict=True)]
    kinds = {f.name: column_kind(f.type) for f in table.schema}
    if isinstance(block, BarChartDisplay):
        spec = bar_spec(block, rows, kinds)
    elif isinstance(block, LineChartDisplay):
        spec = line_spec(block, rows, kinds)
    else:
        spec = pie_spec(block, rows)
    return {
        "type": block.type,
        "title": block.title,
        "data": block.data,
        "spec": spec,
        "row_count": table.num_rows,
        "truncated": table.num_rows > CHART_ROW_LIMIT,
    }


def _markdown(block: MarkdownDisplay, names: Names) -> dict[str, Any]:
    try:
        return {"type": "markdown", "content": render_text(block.content, names)}
    except TemplateProblem as exc:
        return {"type": "markdown", "content": "", "error": f"markdown template: {exc}"}


def template_names(tables: Tables, controls: dict[str, Any]) -> dict[str, Any]:
    """What a markdown block's template sees: each task's table by name, ``controls``."""
    names: dict[str, Any] = {name: to_view(TableOutput(t)) for name, t in tables.items()}
    names["controls"] = controls
    return names


def _block(block: Display, tables: Tables, names: Names) -> dict[str, Any] | None:
    """The page document of one block; None for inline controls (listed with the
    app's controls, as Oxy lists them)."""
    if isinstance(block, (ControlDisplay, ControlsDisplay)):
        return None
    if isinstance(block, MarkdownDisplay):
        return _markdown(block, names)
    if isinstance(block, RowDisplay):
        return {
            "type": "row",
            "columns": block.columns or max(len(block.children), 1),
            "children": _blocks(block.children, tables, names),
        }
    try:
        if isinstance(block, TableDisplay):
            return _table_block(block, tables)
        return _chart_block(block, tables)
    except _MissingData as exc:
        return {"type": block.type, "title": block.title, "data": block.data, "error": str(exc)}


def _blocks(blocks: list[Display], tables: Tables, names: Names) -> list[dict[str, Any]]:
    return [doc for doc in (_block(block, tables, names) for block in blocks) if doc is not None]


def _options(source: str | None, static: list[Any] | None, tables: Tables) -> list[Any] | None:
    if source is None:
        return [json_value(o) for o in static] if static is not None else None
    table = tables.get(source)
    if table is None or table.num_columns == 0:
        return []
    values = [json_value(v) for v in table.column(0).to_pylist()]
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
            if len(seen) >= OPTION_LIMIT:
                break
    return seen


def build_app_result(
    app: AppConfig,
    tables: Tables,
    controls: dict[str, Any],
    *,
    revision_id: str,
    app_name: str,
    names: Names | None = None,
) -> dict[str, Any]:
    """The stored JSON of one app run: ``controls`` must already be resolved.

    ``names`` is what markdown templates see (every task output, texts included);
    by default the tables and ``controls``."""
    if names is None:
        names = template_names(tables, controls)
    return {
        "format": RESULT_FORMAT,
        "app": app_name,
        "revision_id": revision_id,
        "title": app.title or humanize(app_name),
        "description": app.description,
        "controls": [
            {
                "name": c.name,
                "type": c.type,
                "label": c.label or humanize(c.name),
                "options": _options(c.source, c.options, tables),
                "source": c.source,
                "value": json_value(controls.get(c.name)),
            }
            for c in app_controls(app)
        ],
        "display": _blocks(app.display, tables, names),
    }
