"""A failed step's error shows the file:line of its task, in Chromium (Playwright)
against a real ``quarry serve`` on SQLite: beside the error in the steps table, in
the run's summary and in the live event log; the runs API gives it as the step's
``source``. The line is the task's own — where its mapping starts in the file, as
the compiler stored it (``quarry.definitions.task_positions``) — not the line of a
reference inside it (``quarry.catalog.task_sources``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from quarry.catalog.task_sources import canonical_step
from tests.integration.web.pages import (
    WORKSPACE,
    Quarry,
    axe_violations,
    chromium,
    quarry_server,
    screenshot_dir,
    watch,
)

pytestmark = pytest.mark.slow
RUN_TIMEOUT_MS = 90_000
# The second task fails; it starts on line 7, its reference (database) is on line 11.
LOCATED = """\
description: A failing step somewhere in the middle
tasks:
  - name: intro
    type: formatter
    template: hello

  - name: missing
    type: execute_sql
    # the task's first reference is three lines below; its own line is 7

    database: local
    sql_query: SELECT * FROM no_such_table
"""


@pytest.fixture(scope="module")
def quarry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quarry]:
    located = {"workflows/located.workflow.yml": LOCATED}
    with quarry_server(tmp_path_factory.mktemp("sources"), files=located) as running:
        yield running


def test_canonical_step_keys() -> None:
    assert canonical_step("tasks.2.iter.3.tasks.0") == "tasks.2.tasks.0"
    assert canonical_step("tasks.4.workflow.tasks.1") == "tasks.4"
    assert canonical_step("tasks.1.if.0.tasks.0") == "tasks.1.if.0.tasks.0"


def test_a_failed_step_shows_the_file_and_line_of_its_task(quarry: Quarry, tmp_path: Path) -> None:
    shots = screenshot_dir(tmp_path)
    where = "workflows/located.workflow.yml:7"
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        watched = watch(page)
        page.goto(quarry.url + "/runs")
        page.get_by_label("API token").fill(quarry.token)
        page.get_by_label("API token").press("Enter")
        expect(page).to_have_title("Runs · Quarry")
        page.get_by_label("Workflow").select_option(f"{WORKSPACE}:workflows/located")
        page.get_by_role("button", name="Start run").click()
        expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]+$"))
        # live: the step.failed line of the event log names the task's place
        failed = page.locator("#events li.error", has_text="step.failed")
        expect(failed).to_contain_text("no_such_table", timeout=RUN_TIMEOUT_MS)
        expect(failed).to_contain_text(f"at {where}")
        page.wait_for_selector("body[data-run-state=finished]", timeout=RUN_TIMEOUT_MS)
        expect(page.locator("#run-state")).to_have_text("failed")
        row = page.locator("#run-detail table.list tbody tr", has_text="missing")
        expect(row.locator("p.error")).to_contain_text("no_such_table")
        expect(row.locator("p.error .source")).to_have_text(f"at {where}")
        expect(page.locator("#run-detail p.error[role=alert] .source")).to_have_text(f"at {where}")
        # the step that succeeded has no error and so no place
        intro = page.locator("#run-detail table.list tbody tr", has_text="intro")
        expect(intro.locator(".source")).to_have_count(0)
        # the runs API says the same of the failed step
        run_id = page.url.rsplit("/", 1)[-1]
        got = httpx.get(
            f"{quarry.url}/api/v1/runs/{run_id}",
            headers={"Authorization": f"Bearer {quarry.token}"},
            timeout=30,
        ).json()
        steps = {s["name"]: s for s in got["steps"]}
        assert steps["missing"]["source"] == where
        assert "source" not in steps["intro"]
        assert axe_violations(page) == []
        page.screenshot(path=str(shots / "run-failed-source.png"), full_page=True)
        assert watched.problems == []
        context.close()
