"""What ``quarry run`` shows at the end: the outputs that matter, not just "succeeded".

A workflow's point is usually its last report (a formatter's Markdown) or its last
table, and sometimes the files it exports. After the run they are read back from the
run's own records (steps and artifacts in the state database, results in the object
store) — the same place the runs API serves them from — and shown:

- for people: the last formatter text rendered as Markdown, the last table as a
  table (first :data:`TABLE_ROWS` rows), each export with the path it was written to;
- ``--json``: one JSON document on stdout (run, state, error, those outputs);
- ``--quiet``: nothing on success (the exit status says it), the error on failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from quarry.runtime.apps.values import json_value
from quarry.runtime.engine.results import Output, StepResult, TableOutput, TextOutput
from quarry.runtime.runs.outputs import table_json
from quarry.store import runs as runq
from quarry.store.runs import RunRow

TABLE_ROWS = 20
READING_WIDTH = 100


@dataclass
class RunOutputs:
    """The last text and the last table a run produced, and its exports."""

    text: str | None = None
    text_step: str | None = None
    table: TableOutput | None = None
    table_step: str | None = None
    exports: list[dict[str, Any]] = field(default_factory=list)
    table_after_text: bool = False  # the report (usually) already shows earlier tables


def collect(svc: Any, run: RunRow) -> RunOutputs:
    """Read the run's finished steps in the order they finished; later wins."""
    found = RunOutputs()
    with svc.engine.connect() as conn:
        steps = runq.get_steps(conn, run.id)
        artifacts = runq.list_artifacts(conn, run.id)
    done = [s for s in steps if s.state == "succeeded" and s.result_key]
    done.sort(key=lambda s: (s.finished_at is None, s.finished_at, s.step_key))
    for step in done:
        assert step.result_key is not None
        output: Output = StepResult.from_bytes(svc.store.get(step.result_key)).output
        if isinstance(output, TextOutput):
            found.text, found.text_step = output.text, step.name
            found.table_after_text = False
        elif isinstance(output, TableOutput):
            found.table, found.table_step = output, step.name
            found.table_after_text = True
    found.exports = [
        {"path": a.name, "format": a.format, "size": a.size, "step": a.step_key}
        for a in artifacts
        if a.kind == "export"
    ]
    return found


def as_json(run: RunRow, outputs: RunOutputs) -> str:
    table = outputs.table
    document = {
        "run_id": run.id,
        "state": run.state,
        "error": run.error,
        "target": {"kind": run.target_kind, "name": run.target_name},
        "revision_id": run.revision_id,
        "text": None if outputs.text is None else {"step": outputs.text_step, "text": outputs.text},
        "table": None if table is None else {"step": outputs.table_step, **table_json(table.table)},
        "exports": outputs.exports,
    }
    return json.dumps(document, default=json_value)


def _rich_table(output: TableOutput, title: str | None) -> tuple[Table, int]:
    table = Table(title=title, title_justify="left")
    for name in output.table.column_names:
        table.add_column(name, overflow="fold")
    rows = output.table.slice(0, TABLE_ROWS).to_pylist()
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row.values()])
    return table, output.table.num_rows - len(rows)


def print_outputs(out: Console, outputs: RunOutputs, root: Path | None) -> None:
    """The last report as Markdown, the last table (unless the report came after it:
    a report usually shows the tables before it), then where exports went.

    Rendered at most :data:`READING_WIDTH` wide: a pipe gets a console no line
    reaches (``quarry.cli_output``), and a heading centred across that is lost."""
    width = min(out.width, READING_WIDTH)
    if outputs.text is not None:
        from rich.markdown import Markdown  # ~0.1 s CPU (markdown-it, pygments): only here

        out.print()
        out.print(Markdown(outputs.text), width=width)
    if outputs.table is not None and (outputs.text is None or outputs.table_after_text):
        out.print()
        table, more = _rich_table(outputs.table, outputs.table_step)
        out.print(table, width=width)
        if more:
            out.print(f"… {more} more row(s) (--json or the runs API gives them all)")
    for export in outputs.exports:
        where = (root / export["path"]) if root is not None else Path(export["path"])
        out.print(
            f"exported {where} ({export['format']}, {export['size']} bytes)",
            soft_wrap=True,
            highlight=False,
        )
