"""Chat through a fleet: Chromium talks only to a ``serve`` replica (Postgres + S3,
tokens required) while the Factory (role ``ide``) compiles and its worker runs each
turn against the scripted model server. The replica renders the page, creates the
thread and streams the answer from the turn's events in the database (FleetOk); the
model key is an environment variable the operator allows for the tenant."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from quarry.demo import create_demo_workspace
from tests.integration.web.fleet import editor_token, web_fleet
from tests.integration.web.pages import axe_violations, chromium, watch
from tests.integration.web.test_chat_browser import AGENT, SQL
from tests.support.model_server import ModelServer, text_reply, tool_reply
from tests.support.processes import ServerProcess
from tests.support.services import S3Server

pytestmark = pytest.mark.slow
TURN_TIMEOUT_MS = 120_000


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer() as running:
        yield running


@pytest.fixture
def replica(
    s3_server: S3Server, pg_database: str, tmp_path: Path, model: ModelServer
) -> Iterator[ServerProcess]:
    root = create_demo_workspace(tmp_path / "shop")
    model.serve_models(root, "LOCAL_OPENAI_KEY")
    (root / "agents" / "helper.agent.yml").write_text(AGENT)
    factory_env = {
        "LOCAL_OPENAI_KEY": "sk-test",
        "QUARRY_SECRET_ENV_ALLOW": json.dumps({"local": ["LOCAL_*"]}),
    }
    with web_fleet(s3_server, pg_database, tmp_path, root, factory_env) as serve:
        yield serve


def test_chat_through_a_serve_replica(
    replica: ServerProcess, pg_database: str, model: ModelServer
) -> None:
    model.add(
        tool_reply("execute_sql", match="orders per region", sql=SQL),
        text_reply("North has the most orders.", match="[4 rows]"),
    )
    token = editor_token(pg_database)
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        watched = watch(page)
        page.goto(replica.url + "/chat")
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_title("Chat · Quarry")
        page.get_by_label("Agent", exact=True).select_option("shop|agents/helper")
        page.get_by_label("Message").fill("How many orders per region?")
        page.get_by_role("button", name="Send").click()
        reply = page.locator("article.msg-assistant").last
        expect(reply).to_have_attribute("data-status", "answered", timeout=TURN_TIMEOUT_MS)
        expect(reply.locator(".text")).to_have_text("North has the most orders.")
        expect(reply.locator("table.data tbody tr")).to_have_count(4)
        reply.locator("summary").first.click()
        expect(reply.locator("pre.sql")).to_have_text(SQL)
        expect(page).to_have_url(re.compile(r"thread="))
        assert axe_violations(page) == []
        assert watched.problems == []
        context.close()
    assert "Traceback" not in replica.log(), replica.log()[-3000:]
