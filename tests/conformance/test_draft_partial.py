"""Draft runs on the Factory (the IDE's run button and app preview) run a workflow or
an app whose own files compile while an unrelated file is broken (issue #15): the
draft revision leaves the broken files out, the response lists their problems as
warnings, nothing is promoted; a broken target, or one that needs the broken file,
still fails with the problem. Real Factory over a socket, real git, real DuckDB."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Backend
from tests.integration.factory.gitrepos import factory_api

WS = "/api/v1/workspaces/shop"
BROKEN_AGENT = "agents/broken.agent.yml"
# An agent without its required model: an error at line 1 of that file only.
BROKEN_TEXT = "name: broken\nsystem_instructions: hi\n"


def _finish(client: httpx.Client, run: dict[str, Any]) -> dict[str, Any]:
    with client.stream("GET", run["events_url"], timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: ") and '"run.' in line:
                kind = json.loads(line[6:]).get("type")
                if kind in ("run.succeeded", "run.failed", "run.cancelled"):
                    break
    done: dict[str, Any] = client.get(f"/api/v1/runs/{run['id']}").json()
    return done


def test_a_broken_agent_does_not_stop_a_draft_run_or_an_app(
    backend: Backend, tmp_path: Path
) -> None:
    with factory_api(backend, tmp_path) as api:
        current = api.current()
        assert api.put(BROKEN_AGENT, BROKEN_TEXT, None).status_code in (200, 201)

        workflow = api.client.post(f"{WS}/draft-runs", json={"name": "workflows/monthly_revenue"})
        assert workflow.status_code == 202, workflow.text
        body = workflow.json()
        # Without the broken file the working copy is the current revision's content,
        # and revision ids are content-derived: the draft may be that very revision.
        assert body["draft"] and body["revision_id"]
        assert [w["path"] for w in body["warnings"]] == [BROKEN_AGENT], body["warnings"]
        assert all(w["severity"] == "warning" for w in body["warnings"])
        done = _finish(api.client, body)
        assert done["state"] == "succeeded", done
        assert done["steps"] and all(s["state"] == "succeeded" for s in done["steps"])

        by_path = api.client.post(
            f"{WS}/draft-runs", json={"name": "workflows/region_report.procedure.yml"}
        )
        assert by_path.status_code == 202, by_path.text
        assert _finish(api.client, by_path.json())["state"] == "succeeded"

        app = api.client.post(
            f"{WS}/draft-runs", json={"kind": "app", "name": "apps/sales_overview"}
        )
        assert app.status_code == 202, app.text
        assert app.json()["warnings"]
        assert _finish(api.client, app.json())["state"] == "succeeded"

        assert api.current() == current, "a draft run never promotes"


def test_a_broken_target_or_dependency_still_fails(backend: Backend, tmp_path: Path) -> None:
    with factory_api(backend, tmp_path) as api:
        broken = "workflows/broken.workflow.yml"
        assert api.put(broken, "tasks:\n  - name: x\n    type: formatter\n", None).status_code in (
            200,
            201,
        )
        needs = "workflows/needs.workflow.yml"
        text = "tasks:\n  - name: s\n    type: workflow\n    src: workflows/broken.workflow.yml\n"
        assert api.put(needs, text, None).status_code in (200, 201)
        for name in ("workflows/broken", "workflows/needs", "../outside"):
            failed = api.client.post(f"{WS}/draft-runs", json={"name": name})
            assert failed.status_code == 422, (name, failed.text)
            assert "broken.workflow.yml:2:5" in failed.text, failed.text
