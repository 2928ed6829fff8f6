"""The web app through a fleet: Chromium talks only to a ``serve`` replica (Postgres +
S3, tokens required) while the Factory (role ``ide``) compiles and its worker runs
what the pages start. The pages are FleetOk: the replica renders them from the
database, follows the runs' events pushed by the Factory's commits, and never needs
the working copy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from quarry.demo import create_demo_workspace
from tests.integration.web.fleet import editor_token, web_fleet
from tests.integration.web.pages import axe_violations, chromium, watch
from tests.support.processes import ServerProcess
from tests.support.services import S3Server

pytestmark = pytest.mark.slow
RUN_TIMEOUT_MS = 120_000


@pytest.fixture
def replica(s3_server: S3Server, pg_database: str, tmp_path: Path) -> Iterator[ServerProcess]:
    root = create_demo_workspace(tmp_path / "shop")
    with web_fleet(s3_server, pg_database, tmp_path, root) as serve:
        yield serve


def test_sign_in_dashboard_and_run_through_a_serve_replica(
    replica: ServerProcess, pg_database: str, tmp_path: Path
) -> None:
    token = editor_token(pg_database)
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        watched = watch(page)
        page.goto(replica.url + "/dashboards")
        expect(page).to_have_url(re.compile(r"/sign-in\?next=%2Fdashboards"))
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(replica.url + "/dashboards")
        expect(page.locator(".who")).to_contain_text("editor")

        page.get_by_role("link", name="Sales overview").click()
        page.wait_for_selector("body[data-state=ready]", timeout=RUN_TIMEOUT_MS)
        expect(page.locator(".chart svg")).to_have_count(3)
        assert axe_violations(page) == []

        page.goto(replica.url + "/runs")
        page.get_by_label("Workflow").select_option("shop:workflows/monthly_revenue")
        page.get_by_role("button", name="Start run").click()
        page.wait_for_selector("body[data-run-state=finished]", timeout=RUN_TIMEOUT_MS)
        expect(page.locator("#run-state")).to_have_text("succeeded")
        expect(page.locator("#events")).to_contain_text("run.succeeded")
        page.screenshot(path=str(tmp_path / "fleet-run.png"), full_page=True)
        assert watched.problems == []
        context.close()
    assert "Traceback" not in replica.log(), replica.log()[-3000:]
