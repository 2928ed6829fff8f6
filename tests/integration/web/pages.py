"""A real ``quarry serve`` process on SQLite with tokens required, and Playwright
driving Debian's Chromium against it: the helpers of ``test_pages_browser``.

Chromium is ``/usr/bin/chromium`` (``scripts/system-deps`` installs it); Playwright
cannot download its own browser here, so it is told which executable to launch.
Screenshots go to ``$QUARRY_SCREENSHOT_DIR`` when set (CI keeps them as artifacts),
else under the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from quarry.demo import create_demo_workspace
from tests.integration.web.browser import chromium_binary
from tests.support.processes import ServerProcess, quarry_process

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
WORKSPACE = "shop"
XSS_TITLE = "<script>window.__xss = 1</script> Escapes"
XSS_CELL = "<script>window.__xss = 2</script>"
XSS_IMG = '<img src=x onerror="window.__xss = 3">'

EXTRA_FILES = {
    "schedules/nightly.schedule.yml": (
        "target:\n  workflow: workflows/monthly_revenue.workflow.yml\n"
        'cron: "0 3 * * *"\ntimezone: UTC\ndescription: Nightly revenue\n'
    ),
    "workflows/broken.workflow.yml": (
        "tasks:\n  - name: missing\n    type: execute_sql\n    database: local\n"
        "    sql_query: SELECT * FROM no_such_table\n"
    ),
    # Long enough to cancel: a cross join DuckDB counts for minutes.
    "workflows/slow.workflow.yml": (
        "tasks:\n  - name: spin\n    type: execute_sql\n    database: local\n"
        "    sql_query: SELECT count(*) FROM range(100000000000) a\n"
    ),
    # Everything a workspace author controls, with markup in it: shown as text.
    "apps/escapes.app.yml": (
        f"title: {json.dumps(XSS_TITLE)}\n"
        "tasks:\n  - name: cells\n    type: execute_sql\n    database: local\n"
        f"    sql_query: |\n      SELECT '{XSS_CELL}' AS cell, '{XSS_IMG}' AS img\n"
        + "display:\n  - type: markdown\n"
        + '    content: "Plain <script>window.__xss = 4</script> text"\n'
        + "  - type: table\n    data: cells\n    title: Cells\n"
    ),
}


@dataclass
class Quarry:
    server: ServerProcess
    token: str
    root: Path

    @property
    def url(self) -> str:
        return self.server.url


def _token(env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "quarry",
            "tokens",
            "create",
            *("--tenant", "local", "--role", "admin"),
        ],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout.strip().splitlines()[-1].strip()


@contextmanager
def quarry_server(
    tmp: Path,
    *,
    files: Mapping[str, str] = EXTRA_FILES,
    env: Mapping[str, str] | None = None,
    prepare: Callable[[Path], None] | None = None,
) -> Iterator[Quarry]:
    """``quarry serve`` of the demo workspace (plus ``files``, relative path -> text,
    :data:`EXTRA_FILES` unless told otherwise, then ``prepare(root)`` for edits that
    need the demo's own files), tokens required, ``env`` added to the process's
    environment, its in-process worker running what the pages start."""
    root = create_demo_workspace(tmp / WORKSPACE)
    for relpath, text in files.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text(text)
    if prepare is not None:
        prepare(root)
    server_env = {
        "QUARRY_DATA_DIR": str(tmp / "data"),
        "QUARRY_AUTH": "tokens",
        "COLUMNS": "120",
        # a cancel reaches the worker at its next heartbeat (a third of the lease)
        "QUARRY_WORKER_LEASE_SECONDS": "3",
        **(env or {}),
    }
    args = ["serve", str(root), "--name", WORKSPACE]
    with quarry_process(args, server_env, tmp / "serve.log") as server:
        yield Quarry(server, _token(server_env, tmp), root)


@dataclass
class Watched:
    """What a page said on its console: CSP violations and script errors fail a test."""

    problems: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            self.problems.append(f"CSP: {text}")
        elif message.type == "error" and "Failed to load resource" not in text:
            self.problems.append(f"console error: {text}")

    def page_error(self, error: Any) -> None:
        self.problems.append(f"page error: {error}")


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_binary(),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield browser
        finally:
            browser.close()


def watch(page: Page) -> Watched:
    watched = Watched()
    page.on("console", watched.console)
    page.on("pageerror", watched.page_error)
    return watched


def axe_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ' (' + v.impact + '): ' + v.help + ' — ' +"
        " v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))"
    )
    return [str(v) for v in found]


def screenshot_dir(tmp: Path) -> Path:
    chosen = os.environ.get("QUARRY_SCREENSHOT_DIR")
    folder = Path(chosen) if chosen else tmp / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
