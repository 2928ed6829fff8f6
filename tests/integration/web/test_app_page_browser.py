"""The app page in headless Chromium: charts render (SVG), a screenshot is taken, and
with nothing stored the page runs the app, follows the run and shows its result."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from quarry.core.hashing import canonical_json
from quarry.runtime.apps import app_result_key, build_app_result
from quarry.runtime.apps.load import load_app
from quarry.store import runs as runq
from quarry.store.runs import RunRow
from tests.conftest import Backend
from tests.integration.web.browser import DevToolsPage, run_chromium
from tests.integration.web.conftest import Demo, Served, serve_demo
from tests.integration.web.demo_app import APP, DATA, store_demo_result

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
READY = "document.body.dataset.state === 'ready'"


def test_app_page_renders_charts_in_chromium(served_sqlite: Served, tmp_path: Path) -> None:
    served = served_sqlite
    store_demo_result(
        served.svc.store,
        served.root,
        tenant_id="local",
        workspace_id=served.workspace.id,
        revision_id=served.revision_id,
    )
    url = f"{served.url}/apps/{APP}"

    html = run_chromium(tmp_path / "profile-dom", "--dump-dom", url)
    assert 'data-state="ready"' in html, html[-3000:]
    assert html.count('class="marks"') >= 3, "line, bar and pie charts render as SVG"
    assert "<svg" in html
    assert "<h1>Sales overview</h1>" in html, "markdown renders"
    assert "Top ten products" in html and "Key figures" in html
    assert "$445,833.33" in html, "currency formats apply to table cells"
    assert '<option value="North">North</option>' in html

    shot = tmp_path / "app.png"
    run_chromium(tmp_path / "profile-shot", f"--screenshot={shot}", url)
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC)
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2000)
    assert len(data) > 40_000, "a blank page compresses to a few kilobytes"
    keep = os.environ.get("QUARRY_KEEP_SCREENSHOT")
    if keep:  # to look at the page yourself
        shutil.copyfile(shot, keep)


def execute_app_run(demo: Demo, run: RunRow) -> None:
    """Play the run executor for an app run: store the result, finish the run with the
    events a real run writes. The page only ever sees the API."""
    engine = demo.svc.engine
    with engine.begin() as conn:
        runq.mark_started(conn, run.id)
        runq.append_event(conn, run.id, {"type": "run.started", "attempt": 1})
        runq.append_event(conn, run.id, {"type": "step.started", "step": "kpis"})
    store_demo_result(
        demo.svc.store,
        demo.root,
        tenant_id=run.tenant_id,
        workspace_id=run.workspace_id,
        revision_id=run.revision_id,
        given=run.variables,
    )
    with engine.begin() as conn:
        runq.append_event(conn, run.id, {"type": "step.succeeded", "step": "kpis"})
        runq.mark_finished(conn, run.id, "succeeded")
        runq.append_event(conn, run.id, {"type": "run.succeeded"})


def fail_app_run(demo: Demo, run: RunRow) -> None:
    with demo.svc.engine.begin() as conn:
        runq.mark_started(conn, run.id)
        runq.append_event(conn, run.id, {"type": "step.started", "step": "kpis"})
        error = {"error": "workflow_error", "message": "Binder Error: column x not found"}
        runq.append_event(conn, run.id, {"type": "step.failed", "step": "kpis", "error": error})
        runq.mark_finished(conn, run.id, "failed", error["message"])
        runq.append_event(conn, run.id, {"type": "run.failed", "error": error})


def _executing_on_follow(
    executed: list[RunRow], execute_run: Callable[[Demo, RunRow], None] = execute_app_run
) -> Callable[[FastAPI, Demo], None]:
    """Execute a run when the page starts following it (in place of a worker)."""

    def wrap(app: FastAPI, demo: Demo) -> None:
        @app.middleware("http")
        async def run_on_follow(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            path = request.url.path
            if path.startswith("/api/v1/runs/") and path.endswith("/events"):
                run_id = path.split("/")[4]

                def execute() -> None:
                    with demo.svc.engine.connect() as conn:
                        run = runq.get_run(conn, "local", run_id)
                    if not run.finished:
                        execute_run(demo, run)
                        executed.append(run)

                await run_in_threadpool(execute)
            return await call_next(request)

    return wrap


def test_app_page_runs_the_app_when_nothing_is_stored(
    backend_sqlite: Backend, tmp_path: Path
) -> None:
    executed: list[RunRow] = []
    wrap = _executing_on_follow(executed)
    with (
        serve_demo(backend_sqlite, tmp_path, wrap=wrap) as served,
        DevToolsPage(tmp_path / "profile") as page,
    ):
        page.open(f"{served.url}/apps/{APP}?region=North")
        page.wait_for(READY)
        assert page.evaluate("document.querySelectorAll('svg.marks').length") >= 3
        assert page.evaluate("document.getElementById('control-region').value") == "North"
        steps = page.evaluate("document.getElementById('progress').textContent")
        assert "run.succeeded" in steps

        # a control change fetches again; nothing stored for South, so it runs again
        page.evaluate(
            "(() => { const s = document.getElementById('control-region');"
            " s.value = 'South'; s.dispatchEvent(new Event('change')); })()"
        )
        page.wait_for(READY)
        assert page.evaluate("window.location.search") == "?region=South"
        assert page.evaluate("document.getElementById('control-region').value") == "South"
        assert [(r.target_kind, r.target_name, r.variables) for r in executed] == [
            ("app", APP, {"region": "North"}),
            ("app", APP, {"region": "South"}),
        ]
        assert {r.revision_id for r in executed} == {served.revision_id}
        stored = json.loads(served.client.get(DATA, params={"region": "South"}).text)
        assert stored["controls"][0]["value"] == "South"

        # back to North: stored already, so no run
        page.evaluate(
            "(() => { const s = document.getElementById('control-region');"
            " s.value = 'North'; s.dispatchEvent(new Event('change')); })()"
        )
        page.wait_for(READY)
        assert len(executed) == 2


def test_app_page_shows_a_failed_run(backend_sqlite: Backend, tmp_path: Path) -> None:
    executed: list[RunRow] = []
    wrap = _executing_on_follow(executed, fail_app_run)
    with (
        serve_demo(backend_sqlite, tmp_path, wrap=wrap) as served,
        DevToolsPage(tmp_path / "profile") as page,
    ):
        page.open(f"{served.url}/apps/{APP}")
        page.wait_for("document.body.dataset.state === 'error'")
        error = page.evaluate("document.getElementById('error').textContent")
        assert error == "The app run failed: Binder Error: column x not found"
        assert page.evaluate("document.getElementById('error').hidden") is False
        steps = page.evaluate("document.getElementById('progress').textContent")
        assert "step.failed kpis — Binder Error: column x not found" in steps
        assert page.evaluate("document.getElementById('refresh').disabled") is False
        assert len(executed) == 1


HOSTILE_APP = """
title: Notes
tasks: []
display:
  - type: markdown
    content: |
      ## Safe **text**

      <img src=x onerror="window.pwned = 1"> <script>window.pwned = 2</script>
      [bad](javascript:window.pwned=3) and [good](https://example.com/docs)

      - one `<b>code</b>`
      - two
  - type: row
    columns: 2
    children:
      - type: markdown
        content: left
      - type: markdown
        content: right
"""


def test_markdown_is_escaped_and_rows_lay_out(backend_sqlite: Backend, tmp_path: Path) -> None:
    files = {"apps/notes.app.yml": HOSTILE_APP}
    with (
        serve_demo(backend_sqlite, tmp_path, extra_files=files) as served,
        DevToolsPage(tmp_path / "profile") as page,
    ):
        app = load_app(served.svc.catalog, served.workspace, served.revision_id, "apps/notes")
        doc = build_app_result(app, {}, {}, revision_id=served.revision_id, app_name="apps/notes")
        key = app_result_key("local", served.workspace.id, served.revision_id, "apps/notes", {})
        served.svc.store.put(key, canonical_json(doc))

        page.open(f"{served.url}/apps/notes")
        page.wait_for(READY)
        assert page.evaluate("window.pwned === undefined")
        blocks = "document.getElementById('blocks')"
        assert page.evaluate(f"{blocks}.querySelectorAll('img, script').length") == 0
        assert page.evaluate(f"{blocks}.querySelector('h2 strong').textContent") == "text"
        links = page.evaluate(f"[...{blocks}.querySelectorAll('a')].map(a => a.href)")
        assert links == [f"{served.url}/apps/notes#", "https://example.com/docs"]
        text = page.evaluate(f"{blocks}.textContent")
        assert '<img src=x onerror="window.pwned = 1">' in text
        assert page.evaluate(f"{blocks}.querySelector('li code').textContent") == "<b>code</b>"
        assert page.evaluate(f"{blocks}.querySelectorAll('li').length") == 2
        columns = page.evaluate(
            f"getComputedStyle({blocks}.querySelector('.block-row')).gridTemplateColumns"
        )
        assert len(columns.split()) == 2


def test_app_page_with_the_real_worker(backend_sqlite: Backend, tmp_path: Path) -> None:
    """No stand-in: the page starts a run, the in-process worker executes the app's
    SQL on DuckDB, stores the document, and the page renders its charts."""
    with (
        serve_demo(backend_sqlite, tmp_path, workers=True) as served,
        DevToolsPage(tmp_path / "profile") as page,
    ):
        page.open(f"{served.url}/apps/{APP}?region=East")
        page.wait_for(READY)
        assert page.evaluate("document.querySelectorAll('svg.marks').length") >= 3
        assert "run.succeeded" in page.evaluate("document.getElementById('progress').textContent")
        stored = served.client.get(DATA, params={"region": "East"}).json()
        assert stored["revision_id"] == served.revision_id
        runs = served.client.get("/api/v1/workspaces/shop/runs").json()["runs"]
        assert [(r["kind"], r["state"], r["variables"]) for r in runs] == [
            ("app", "succeeded", {"region": "East"})
        ]
