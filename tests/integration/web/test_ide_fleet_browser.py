"""The IDE through a fleet: Chromium talks only to a ``serve`` replica (Postgres + S3,
tokens required); the IDE page, the file and git API and the compile events are
IdeOnly, so the replica's proxy streams them to the Factory (role ``ide``). Break a
file and see the problem inline, fix it, commit, and the replica's dashboard (read
from the database) shows the change."""

from __future__ import annotations

import os
import re
import subprocess
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
APP = "apps/sales_overview.app.yml"
TIMEOUT_MS = 120_000


@pytest.fixture
def replica(s3_server: S3Server, pg_database: str, tmp_path: Path) -> Iterator[ServerProcess]:
    root = create_demo_workspace(tmp_path / "shop")
    git_env = {
        **os.environ,
        **{
            f"GIT_{who}_{what}": v
            for who in ("AUTHOR", "COMMITTER")
            for what, v in (("NAME", "Test"), ("EMAIL", "test@example.com"))
        },
    }
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "Demo")):
        subprocess.run(["git", *args], cwd=root, env=git_env, check=True, capture_output=True)
    with web_fleet(s3_server, pg_database, tmp_path, root) as serve:
        yield serve


def test_the_ide_through_a_serve_replica(
    replica: ServerProcess, pg_database: str, tmp_path: Path
) -> None:
    token = editor_token(pg_database)
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        page = context.new_page()
        watched = watch(page)
        page.goto(replica.url + "/ide/shop")
        expect(page).to_have_url(re.compile(r"/sign-in\?next=%2Fide%2Fshop"))
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/ide/shop"))
        expect(page.locator("body")).to_have_attribute("data-editor", "ready")
        page.locator(f'button.file[data-path="{APP}"]').click()
        editor = page.locator(".cm-content")
        expect(editor).to_contain_text("title: Sales overview")

        editor.click()
        page.keyboard.press("Control+Home")
        page.keyboard.type("colour: red\n")
        page.keyboard.press("Control+s")
        status = page.locator("#ide-compile")
        expect(status).to_have_attribute("data-state", "failed", timeout=TIMEOUT_MS)
        expect(page.locator("#ide-problems li.problem").first).to_contain_text(f"{APP}:1:")
        assert axe_violations(page) == []

        editor.click()
        page.keyboard.press("Control+Home")
        page.keyboard.press("Shift+ArrowDown")
        page.keyboard.press("Delete")
        page.keyboard.press("End")
        page.keyboard.type(" through the fleet")
        page.keyboard.press("Control+s")
        expect(status).to_have_attribute("data-state", "succeeded", timeout=TIMEOUT_MS)
        page.get_by_role("button", name=f"Stage {APP}", exact=True).click()
        expect(page.locator("#git-staged")).to_contain_text(APP)
        page.get_by_label("Commit message").fill("Retitle through the fleet")
        page.get_by_role("button", name="Commit").click()
        expect(page.locator("#ide-notice")).to_contain_text("Committed", timeout=TIMEOUT_MS)

        page.goto(replica.url + "/workspaces/shop/apps/sales_overview")
        expect(page.locator("h1")).to_contain_text("through the fleet", timeout=10_000)
        assert watched.problems == []
        context.close()
    assert "Traceback" not in replica.log(), replica.log()[-3000:]
