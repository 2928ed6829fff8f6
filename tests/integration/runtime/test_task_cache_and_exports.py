"""Task ``cache:`` read back instead of executing (per revision, in the object store,
never on the working copy) and exports: docx read back with python-docx, a failed
export warns instead of failing its step."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docx
import duckdb
import pytest

from quarry.runtime.engine import TableOutput
from tests.integration.runtime.conftest import Runner

WORKFLOW = """\
description: task cache and exports
variables:
  region:
    type: string
    default: North
tasks:
  - name: counted
    type: execute_sql
    database: local
    sql_query: |
      SELECT count(*) AS n, random() AS r FROM orders WHERE region = {{ region | sqlquote }}
    cache:
      enabled: true
      path: "cache/{{ region | lower }}.json"
  - name: uncached
    type: execute_sql
    database: local
    sql_query: SELECT random() AS r
    cache:
      enabled: false
      path: cache/off.json
  - name: escaping_cache
    type: execute_sql
    database: local
    sql_query: SELECT random() AS r
    cache:
      enabled: true
      path: "../../outside/{{ region }}.json"
  - name: report
    type: formatter
    template: |
      # Report for {{ region }}
      **{{ counted.n[0] }}** orders in total.
      - first point
      1. numbered point
    export:
      format: docx
      path: "exports/{{ region }}.docx"
  - name: categories
    type: execute_sql
    database: local
    sql_query: |
      SELECT category, count(*) AS orders FROM orders GROUP BY 1 ORDER BY 1
    export:
      format: docx
      path: exports/categories.docx
  - name: text_as_parquet
    type: formatter
    template: just text
    export:
      format: parquet
      path: exports/text.parquet
  - name: escaping_export
    type: formatter
    template: just text
    export:
      format: txt
      path: ../outside.txt
  - name: last
    type: formatter
    template: "done: {{ text_as_parquet }}"
"""


@pytest.fixture
def cache_runner(make_runner: Callable[..., Runner], workspace: Path) -> Runner:
    (workspace / "workflows" / "cached.workflow.yml").write_text(WORKFLOW)
    return make_runner(workspace)


def _events(runner: Runner, kind: str) -> list[dict[str, Any]]:
    return [e for e in runner.events if e["event"] == kind]


def _value(result: Any, task: str, column: str) -> Any:
    output = result.outputs[task]
    assert isinstance(output, TableOutput)
    return output.table.column(column)[0].as_py()


def test_cache_is_read_back_instead_of_executing(
    cache_runner: Runner, workspace: Path, make_runner: Callable[..., Runner]
) -> None:
    first = cache_runner.run("workflows/cached")
    assert [e["path"] for e in _events(cache_runner, "step_cache_written")] == ["cache/north.json"]
    warnings = {e["warning"]: e for e in _events(cache_runner, "step_warning")}
    assert "../../outside" in warnings["cache_disabled"]["message"]
    cache_runner.events.clear()

    second = cache_runner.run("workflows/cached")
    assert [e["path"] for e in _events(cache_runner, "step_cache_hit")] == ["cache/north.json"]
    assert not _events(cache_runner, "step_cache_written")
    # the random value proves the stored result was read, not the SQL run again
    assert _value(second, "counted", "r") == _value(first, "counted", "r")
    assert _value(second, "uncached", "r") != _value(first, "uncached", "r")
    assert _value(second, "escaping_cache", "r") != _value(first, "escaping_cache", "r")
    orders = workspace / ".db" / "orders.csv"
    direct = duckdb.execute(f"SELECT count(*) FROM '{orders}' WHERE region = 'North'").fetchone()
    assert direct is not None and _value(second, "counted", "n") == direct[0]

    # another rendered path is another entry
    south = cache_runner.run("workflows/cached", {"region": "South"})
    assert _value(south, "counted", "r") != _value(first, "counted", "r")

    # stored in the object store under the revision, never on the working copy
    assert not (workspace / "cache").exists()
    assert not (workspace.parent / "outside").exists()
    source = cache_runner.source
    prefix = f"t/local/task-cache/{source.workspace.id}/{source.revision_id}/"
    store = cache_runner.services.store
    for path in ("cache/north.json", "cache/south.json"):
        assert store.exists(prefix + hashlib.sha256(path.encode()).hexdigest())

    # a new revision starts with an empty cache
    changed = WORKFLOW.replace("task cache and exports", "task cache and exports, edited")
    (workspace / "workflows" / "cached.workflow.yml").write_text(changed)
    newer = make_runner(workspace)
    assert newer.source.revision_id != source.revision_id
    third = newer.run("workflows/cached")
    assert _events(newer, "step_cache_written") and not _events(newer, "step_cache_hit")
    assert _value(third, "counted", "r") != _value(first, "counted", "r")


def test_docx_exports_and_failed_exports_warn(cache_runner: Runner) -> None:
    result = cache_runner.run("workflows/cached", {"region": "South"})
    by_path = {path: (data, fmt) for path, data, fmt in cache_runner.exports}
    assert set(by_path) == {"exports/South.docx", "exports/categories.docx"}

    data, fmt = by_path["exports/South.docx"]
    assert fmt == "docx"
    doc = docx.Document(io.BytesIO(data))
    n = _value(result, "counted", "n")
    assert [(p.style.name if p.style else None, p.text) for p in doc.paragraphs] == [
        ("Heading 1", "Report for South"),
        ("Normal", f"{n} orders in total."),
        ("List Bullet", "first point"),
        ("List Number", "numbered point"),
    ]
    assert [r.bold for r in doc.paragraphs[1].runs][:1] == [True]

    grid = docx.Document(io.BytesIO(by_path["exports/categories.docx"][0])).tables[0]
    cells = [[c.text for c in row.cells] for row in grid.rows]
    categories = result.outputs["categories"]
    assert isinstance(categories, TableOutput)
    assert cells[0] == ["category", "orders"]
    assert cells[1:] == [[str(v) for v in row.values()] for row in categories.table.to_pylist()]

    # the failed exports warned; their steps and the run went on
    warned = {e["path"]: e for e in _events(cache_runner, "step_warning") if "path" in e}
    assert "cannot be exported as 'parquet'" in warned["exports/text.parquet"]["message"]
    assert warned["../outside.txt"]["warning"] == "export_failed"
    last = result.outputs["last"]
    assert getattr(last, "text", None) == "done: just text"
    finished = {e["task"] for e in _events(cache_runner, "step_finished")}
    assert {"text_as_parquet", "escaping_export", "last"} <= finished
