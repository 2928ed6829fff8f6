"""Changing a control re-runs only what depends on it (``quarry.runtime.apps.reuse``):
app runs by the real worker over HTTP, on SQLite and Postgres, counting from each
run's events which tasks executed a query and which were read back; the data of a
reused table is the same as computed; a refresh (the same controls again) executes
everything. In Chromium, the dashboard dims (``aria-busy``) only the blocks whose
tasks the changed control re-runs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quarry.runtime.apps.load import load_app
from quarry.runtime.apps.reuse import task_dependencies
from quarry.runtime.source import RevisionSource
from tests.conftest import Backend
from tests.integration.web.conftest import Served, serve_demo
from tests.integration.web.pages import chromium, watch

APP = "apps/reuse"
RUNS = "/api/v1/workspaces/shop/runs"
DATA = f"/api/v1/workspaces/shop/apps/{APP}/data"
REUSE_APP = """\
title: Reuse
controls:
  - name: region
    type: select
    options: ["All", "North", "South", "East", "West"]
    default: All
  - name: year
    type: select
    options: ["2023", "2024"]
    default: "2024"
tasks:
  - name: by_region
    type: execute_sql
    database: local
    sql_query: SELECT region, count(*) AS n FROM orders GROUP BY region ORDER BY region
  - name: regional
    type: execute_sql
    database: local
    sql_query: |
      SELECT count(*) AS n FROM orders
      WHERE {{ controls.region | sqlquote }} = 'All' OR region = {{ controls.region | sqlquote }}
  - name: yearly
    type: execute_sql
    database: local
    sql_file: queries/yearly.sql
  - name: summary
    type: formatter
    template: "{{ regional.n[0] }} orders"
display:
  - type: table
    data: by_region
  - type: table
    data: regional
  - type: table
    data: yearly
  - type: markdown
    content: "{{ summary }}"
"""
YEARLY_SQL = "SELECT count(*) AS n FROM orders WHERE year(order_date) = {{ controls['year'] }}\n"


@pytest.fixture
def served(backend: Backend, tmp_path: Path) -> Iterator[Served]:
    files = {"apps/reuse.app.yml": REUSE_APP, "queries/yearly.sql": YEARLY_SQL}
    with serve_demo(backend, tmp_path, extra_files=files, workers=True) as got:
        yield got


def _run(served: Served, controls: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Run the app; the tasks that executed and the tasks read back, from its events."""
    started = served.client.post(RUNS, json={"kind": "app", "name": APP, "controls": controls})
    assert started.status_code in (200, 201, 202), started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = served.client.get(f"/api/v1/runs/{run_id}").json()
        if run.get("finished_at"):
            assert run["state"] == "succeeded", run
            break
        time.sleep(0.1)  # polling a condition, with a deadline
    else:
        raise AssertionError(f"run {run_id} did not finish in time")
    events: list[tuple[str, dict[str, Any]]] = []
    with served.client.stream("GET", f"/api/v1/runs/{run_id}/events") as stream:
        name = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
            if name == "end":
                break
    finished = {e["task"] for n, e in events if n == "step.finished"}
    reused = {e["task"] for n, e in events if n == "step.cache_hit"}
    return finished - reused, reused


def _table(served: Served, controls: dict[str, str], block: int) -> list[Any]:
    doc = served.client.get(DATA, params=controls).json()
    rows: list[Any] = doc["display"][block]["rows"]
    return rows


def test_what_each_task_depends_on(served: Served) -> None:
    app = load_app(served.svc.catalog, served.workspace, served.revision_id, APP)
    source = RevisionSource(served.svc.catalog, served.workspace, served.revision_id)
    assert task_dependencies(app, source) == {
        "by_region": frozenset(),
        "regional": frozenset({"region"}),
        "yearly": frozenset({"year"}),  # from its sql_file
        "summary": frozenset({"region"}),  # through {{ regional }}
    }


def test_a_control_change_reruns_only_the_tasks_that_read_it(served: Served) -> None:
    everything = {"by_region", "regional", "yearly", "summary"}
    assert _run(served, {}) == (everything, set())
    all_regions = _table(served, {}, 0)

    executed, reused = _run(served, {"region": "North"})
    assert executed == {"regional", "summary"}
    assert reused == {"by_region", "yearly"}
    north = {"region": "North"}
    assert _table(served, north, 0) == all_regions  # read back, the same table
    by_region = {row[0]: row[1] for row in all_regions}
    assert _table(served, north, 1) == [[by_region["North"]]]  # computed for North

    executed, reused = _run(served, {"region": "North", "year": "2023"})
    assert executed == {"yearly"}
    assert reused == {"by_region", "regional", "summary"}
    both = {"region": "North", "year": "2023"}
    assert _table(served, both, 1) == [[by_region["North"]]]
    assert _table(served, both, 2) != _table(served, north, 2)  # 2023 is not 2024

    # The same controls again is a refresh: every task executes.
    assert _run(served, {"region": "North", "year": "2023"}) == (everything, set())
    # ...and the next change reads the refreshed tables.
    executed, reused = _run(served, {"region": "South", "year": "2023"})
    assert executed == {"regional", "summary"}


BUSY_AT_RUN = """() => {
  window.__busy = null;
  new MutationObserver(() => {
    if (document.body.dataset.state === "running" && window.__busy === null) {
      window.__busy = Object.fromEntries([...document.querySelectorAll("#blocks .block[data-task]")]
        .map(b => [b.dataset.task, b.getAttribute("aria-busy") === "true"]));
      document.body.setAttribute("data-busy-seen", "");
    }
  }).observe(document.body, {attributes: true, attributeFilter: ["data-state"]});
}"""


@pytest.mark.slow
def test_the_dashboard_dims_only_the_blocks_a_control_change_reruns(
    backend_sqlite: Backend, tmp_path: Path
) -> None:
    files = {"apps/reuse.app.yml": REUSE_APP, "queries/yearly.sql": YEARLY_SQL}
    with (
        serve_demo(backend_sqlite, tmp_path, extra_files=files, workers=True) as served,
        chromium() as browser,
    ):
        page = browser.new_page()
        watched = watch(page)
        page.goto(f"{served.url}/workspaces/shop/apps/{APP}")
        page.wait_for_selector("body[data-state=ready]", timeout=90_000)
        page.evaluate(BUSY_AT_RUN)
        page.locator("#control-region").select_option("North")
        page.wait_for_selector("body[data-busy-seen]", timeout=90_000)  # (CSP: no eval)
        busy = page.evaluate("window.__busy")
        assert busy == {"by_region": False, "regional": True, "yearly": False}
        page.wait_for_selector("body[data-state=ready]", timeout=90_000)
        assert page.locator("#blocks .block[aria-busy]").count() == 0
        assert watched.problems == []
