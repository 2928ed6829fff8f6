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
from quarry.store import tokens as tokq
from quarry.store.db import create_state_engine
from quarry.store.workspaces import ensure_tenant
from tests.integration.web.pages import axe_violations, chromium, watch
from tests.support.processes import ServerProcess, start_quarry, wait_healthy
from tests.support.services import S3Server, free_port

pytestmark = pytest.mark.slow
RUN_TIMEOUT_MS = 120_000


def _token(database_url: str) -> str:
    engine = create_state_engine(database_url)
    try:
        with engine.begin() as conn:
            ensure_tenant(conn, "local")
            _row, secret = tokq.create_token(conn, "local", "editor", "browser test")
    finally:
        engine.dispose()
    return secret


@pytest.fixture
def replica(s3_server: S3Server, pg_database: str, tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        **s3_server.env,
        "QUARRY_DATABASE_URL": pg_database,
        "QUARRY_BLOB_URL": f"s3://{s3_server.create_bucket()}/quarry",
        "QUARRY_REVISION_CACHE_TTL": "0.2",
        "QUARRY_AUTH": "tokens",
    }
    root = create_demo_workspace(tmp_path / "shop")
    port = free_port()
    factory = start_quarry(
        ["serve", str(root), "--role", "ide", "--name", "shop"],
        {**env, "QUARRY_DATA_DIR": str(tmp_path / "factory")},
        tmp_path / "factory.log",
        port=port,
    )
    serve = start_quarry(
        ["serve", "--role", "serve"],
        {
            **env,
            "QUARRY_DATA_DIR": str(tmp_path / "serve"),
            "QUARRY_IDE_UPSTREAM": f"http://127.0.0.1:{port}",
        },
        tmp_path / "serve.log",
    )
    try:
        wait_healthy(factory, timeout=120)
        wait_healthy(serve, timeout=120)
        yield serve
    finally:
        serve.stop()
        factory.stop()


def test_sign_in_dashboard_and_run_through_a_serve_replica(
    replica: ServerProcess, pg_database: str, tmp_path: Path
) -> None:
    token = _token(pg_database)
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
