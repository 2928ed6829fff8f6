"""Exports over the runs API with the real worker: a docx export downloaded and read
back with python-docx; a failed export is a step.warning event, and the run
succeeds; a cached task is read back in the second run."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import docx
import pytest

from tests.conftest import Backend
from tests.integration.web.conftest import Served, serve_demo

REPORT = """\
description: a report as a Word document
tasks:
  - name: totals
    type: execute_sql
    database: local
    sql_query: SELECT region, count(*) AS orders FROM orders GROUP BY 1 ORDER BY 1
    cache:
      enabled: true
      path: cache/totals.json
  - name: report
    type: formatter
    template: |
      # Orders by region
      {% for row in totals %}
      - {{ row.region }}: **{{ row.orders }}**
      {% endfor %}
    export:
      format: docx
      path: exports/report.docx
  - name: bad_export
    type: formatter
    template: text
    export:
      format: csv
      path: exports/text.csv
"""


@pytest.fixture
def served(backend: Backend, tmp_path: Path) -> Any:
    files = {"workflows/report.workflow.yml": REPORT}
    with serve_demo(backend, tmp_path, extra_files=files, workers=True) as got:
        yield got


def _run(served: Served) -> tuple[str, list[dict[str, Any]]]:
    started = served.client.post("/api/v1/workspaces/shop/runs", json={"name": "workflows/report"})
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    events: list[dict[str, Any]] = []
    with served.client.stream("GET", f"/api/v1/runs/{run_id}/events", timeout=60) as stream:
        name = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name != "end":
                events.append(json.loads(line[5:]))
            if name == "end":
                break
    return run_id, events


def test_docx_export_download_and_warning(served: Served) -> None:
    run_id, events = _run(served)
    run = served.client.get(f"/api/v1/runs/{run_id}").json()
    assert run["state"] == "succeeded", run
    warnings = [e for e in events if e["type"] == "step.warning"]
    assert [w["warning"] for w in warnings] == ["export_failed"]
    assert "exports/text.csv" in warnings[0]["message"]
    assert [e["path"] for e in events if e["type"] == "step.cache_written"] == ["cache/totals.json"]

    artifacts = served.client.get(f"/api/v1/runs/{run_id}/artifacts").json()["artifacts"]
    exports = [a for a in artifacts if a["kind"] == "export"]
    assert [(a["name"], a["format"]) for a in exports] == [("exports/report.docx", "docx")]
    got = served.client.get(exports[0]["url"])
    assert got.status_code == 200
    assert got.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    )
    doc = docx.Document(io.BytesIO(got.content))
    lines = [(p.style.name if p.style else "", p.text) for p in doc.paragraphs]
    assert lines[0] == ("Heading 1", "Orders by region")
    regions = {text.split(":")[0]: text for style, text in lines[1:] if style == "List Bullet"}
    assert sorted(regions) == ["East", "North", "South", "West"]

    # the second run reads the cached totals instead of querying again
    _, again = _run(served)
    assert [e["path"] for e in again if e["type"] == "step.cache_hit"] == ["cache/totals.json"]
