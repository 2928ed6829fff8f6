"""Draft runs: the working copy's uncommitted state runs on the Factory, streams its
events like any run, and stores its results in the artifact store."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Backend
from tests.integration.factory.gitrepos import factory_api

WS = "/api/v1/workspaces/shop"
WORKFLOW = "workflows/monthly_revenue.workflow.yml"


def test_draft_run_executes_uncommitted_edits_on_the_factory(
    backend: Backend, tmp_path: Path
) -> None:
    with factory_api(backend, tmp_path) as api:
        current = api.current()
        text, digest = api.read(WORKFLOW)
        assert api.put(WORKFLOW, text + "\n# draft edit\n", digest).status_code == 200
        created = api.client.post(f"{WS}/draft-runs", json={"name": "workflows/monthly_revenue"})
        assert created.status_code == 202, created.text
        run = created.json()
        assert run["draft"] and run["revision_id"] != current

        events: list[dict[str, object]] = []
        with api.client.stream("GET", run["events_url"], timeout=120) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        kinds = [e["type"] for e in events if "type" in e]
        assert kinds[0] == "run.queued" and kinds[-1] in ("run.succeeded", "run.failed")
        assert "step.started" in kinds, kinds
        done = api.client.get(f"/api/v1/runs/{run['id']}").json()
        assert done["state"] == "succeeded", done
        assert done["revision_id"] == run["revision_id"] and done["origin"] == "factory"
        assert done["steps"] and all(s["state"] == "succeeded" for s in done["steps"])
        step = done["steps"][0]["step_key"]
        output = api.client.get(f"/api/v1/runs/{run['id']}/steps/{step}/output")
        assert output.status_code == 200 and output.json()
        assert api.current() == current, "a draft run never promotes"
        revisions = api.client.get(f"{WS}/revision", params={"revision": run["revision_id"]})
        assert revisions.status_code == 200 and revisions.json()["git_dirty"]

        bad = api.client.post(f"{WS}/draft-runs", json={"name": "workflows/nope"})
        assert bad.status_code == 404
