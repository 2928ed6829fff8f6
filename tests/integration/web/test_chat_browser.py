"""The chat page in Chromium (Playwright) against a real ``quarry serve`` process on
SQLite with tokens required, its in-process worker running each turn, and the scripted
model server answering as the model: ask a question by keyboard, watch the answer
stream in over server-sent events carried by the session cookie, open the tool call
to see its SQL, read its table (a cell holding ``<script>`` shows as text) and its
chart; ask a slow question, cancel it, retry it; open the thread again from the
list. axe-core finds no serious violation; no CSP violation or script error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.integration.web.pages import (
    WORKSPACE,
    Quarry,
    axe_violations,
    chromium,
    quarry_server,
    screenshot_dir,
    watch,
)
from tests.support.model_server import ModelServer, Reply, text_reply, tool_reply

pytestmark = pytest.mark.slow
TURN_TIMEOUT_MS = 90_000  # a turn on this loaded 2-core machine
XSS = "<script>window.__xss = 5</script>"
ANSWER_XSS = '<img src=x onerror="window.__xss = 6">'
SQL = (
    f"SELECT region, count(*) AS n, '{XSS}' AS note FROM 'orders.csv' "
    "GROUP BY region ORDER BY region"
)
AGENT = (
    "model: gpt\n"
    "system_instructions: Answer with SQL on the shop's CSV files.\n"
    "tools:\n"
    "  - name: execute_sql\n    type: execute_sql\n    database: local\n"
    "  - name: visualize\n    type: visualize\n"
)


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServer]:
    with ModelServer() as running:
        yield running


@pytest.fixture(scope="module")
def quarry(tmp_path_factory: pytest.TempPathFactory, model: ModelServer) -> Iterator[Quarry]:
    with quarry_server(
        tmp_path_factory.mktemp("chat"),
        files={"agents/helper.agent.yml": AGENT},
        env={"TEST_OPENAI_KEY": "sk-test"},
        prepare=lambda root: model.serve_models(root, "TEST_OPENAI_KEY"),
    ) as running:
        yield running


def _check(page: Page, shots: Path, name: str) -> None:
    assert axe_violations(page) == [], name
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_chat_ask_see_sql_table_chart_cancel_retry(
    quarry: Quarry, model: ModelServer, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    model.add(
        tool_reply("execute_sql", match="orders per region", sql=SQL),
        tool_reply(
            "visualize",
            match="[4 rows]",
            title="Orders per region",
            xAxis={"type": "category", "data": ["East", "North", "South", "West"]},
            yAxis={"type": "value", "name": "orders"},
            series=[{"name": "orders", "type": "bar", "data": [340, 352, 349, 349]}],
        ),
        text_reply(f"North has the **most** orders. {ANSWER_XSS}", match="is shown"),
        Reply(text="too late", match="slow question", delay=60),
        text_reply("Here is the slow answer.", match="slow question"),
    )
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        watched = watch(page)
        page.goto(quarry.url + "/chat")
        expect(page).to_have_url(re.compile(r"/sign-in\?next=%2Fchat"))
        page.get_by_label("API token").fill(quarry.token)
        page.get_by_label("API token").press("Enter")
        expect(page).to_have_title("Chat · Quarry")
        expect(page.get_by_role("link", name="Chat")).to_have_attribute("aria-current", "page")
        page.get_by_label("Agent", exact=True).select_option(f"{WORKSPACE}|agents/helper")
        expect(page.locator("#chat-threads")).to_contain_text("No threads yet.")
        _check(page, shots, "chat-empty")

        # Keyboard only: type the question, Enter sends it.
        page.get_by_label("Message").focus()
        page.keyboard.type("How many orders per region?")
        page.keyboard.press("Enter")
        reply = page.locator("article.msg-assistant").last
        expect(reply).to_have_attribute("data-status", "answered", timeout=TURN_TIMEOUT_MS)
        # the answer is Markdown, its markup text
        expect(reply.locator(".text")).to_have_text(f"North has the most orders. {ANSWER_XSS}")
        expect(reply.locator(".text strong")).to_have_text("most")
        assert reply.locator(".text img").count() == 0
        expect(page).to_have_url(re.compile(r"/chat\?workspace=shop&agent=agents%2Fhelper&thread="))
        expect(page.locator("#chat-threads a")).to_have_text(re.compile("How many orders"))

        sql_call = reply.locator(".tool[data-tool=execute_sql]")
        summary = sql_call.locator("summary")
        expect(summary).to_contain_text("4 rows")
        summary.focus()
        page.keyboard.press("Enter")  # a <summary> opens by keyboard
        expect(sql_call.locator("pre.sql")).to_have_text(SQL)
        table = sql_call.locator("table.data")
        expect(table.locator("thead th")).to_have_text(["region", "n", "note"])
        expect(table.locator("tbody tr")).to_have_count(4)
        expect(table.locator("tbody tr").first.locator("td").nth(2)).to_have_text(XSS)
        assert page.evaluate("window.__xss") is None
        chart = reply.locator(".tool[data-tool=visualize] .chart svg")
        expect(chart).to_be_visible(timeout=30_000)
        chart_box = reply.locator(".tool[data-tool=visualize] .chart")
        expect(chart_box).to_contain_text("Orders per region")
        _check(page, shots, "chat")

        # A slow turn: cancel it by keyboard, then retry it.
        page.get_by_label("Message").fill("A slow question")
        page.get_by_role("button", name="Send").press("Enter")
        slow = page.locator("article.msg-assistant").last
        expect(slow).to_have_attribute("data-status", re.compile("queued|running"))
        expect(page.locator("body")).to_have_attribute("data-chat-state", "running")
        cancel = page.get_by_role("button", name="Cancel")
        expect(cancel).to_be_visible()
        expect(slow).to_have_attribute("data-status", "running", timeout=TURN_TIMEOUT_MS)
        cancel.press("Enter")
        expect(slow).to_have_attribute("data-status", "cancelled", timeout=TURN_TIMEOUT_MS)
        retry = page.get_by_role("button", name="Retry")
        expect(retry).to_be_visible()
        expect(cancel).to_be_hidden()
        retry.press("Enter")
        again = page.locator("article.msg-assistant").last
        expect(page.locator("article.msg-assistant")).to_have_count(3)
        expect(again).to_have_attribute("data-status", "answered", timeout=TURN_TIMEOUT_MS)
        expect(again.locator(".text")).to_have_text("Here is the slow answer.")
        expect(retry).to_be_hidden()

        # The thread from the list, as stored: every turn with its status and tools.
        page.get_by_role("button", name="New thread").press("Enter")
        expect(page.locator("article.msg")).to_have_count(0)
        page.locator("#chat-threads a").first.click()
        expect(page.locator("article.msg-assistant")).to_have_count(3)
        statuses = page.locator("article.msg-assistant").evaluate_all(
            "els => els.map(e => e.getAttribute('data-status'))"
        )
        assert statuses == ["answered", "cancelled", "answered"]
        stored = page.locator("article.msg-assistant").first
        expect(stored.locator("table.data tbody tr")).to_have_count(4)
        expect(stored.locator(".tool[data-tool=visualize] .chart svg")).to_be_visible()
        _check(page, shots, "chat-thread")
        assert page.evaluate("window.__xss") is None
        assert watched.problems == []
        context.close()
    if os.environ.get("QUARRY_SCREENSHOT_DIR") is None:
        assert (shots / "chat.png").stat().st_size > 0


def test_a_viewer_reads_but_cannot_ask(quarry: Quarry, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "quarry",
            "tokens",
            "create",
            "--tenant",
            "local",
            "--role",
            "viewer",
        ],
        env={**os.environ, "QUARRY_DATA_DIR": str(quarry.root.parent / "data")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    viewer = done.stdout.strip().splitlines()[-1].strip()
    page = httpx.get(
        quarry.url + "/chat", headers={"Authorization": f"Bearer {viewer}"}, timeout=30
    )
    assert page.status_code == 200
    assert 'id="chat-form"' not in page.text and "asking needs the editor role" in page.text
    assert 'id="chat-new" disabled' in page.text
    # and the API refuses it too (the page adds no path of its own)
    asked = httpx.post(
        quarry.url + f"/api/v1/workspaces/{WORKSPACE}/agents/agents/helper/threads",
        headers={"Authorization": f"Bearer {viewer}"},
        json={"message": "hello"},
        timeout=30,
    )
    assert asked.status_code == 403, asked.text
