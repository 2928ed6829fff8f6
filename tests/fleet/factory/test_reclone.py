"""Cloud mode with real processes: ``quarry workspace add --origin`` registers a bare
origin, ``quarry serve`` clones and compiles it at start, an edit is committed and
pushed through the API, and after the workspaces folder is wiped a restarted Factory
clones again and serves the same revision. The CLI works remotely too (``--url``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import Backend
from tests.integration.factory.gitrepos import git, make_origin
from tests.support.processes import quarry_process, wait_until

pytestmark = pytest.mark.slow
WS = "/api/v1/workspaces/shop"


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "quarry", "workspace", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _wait_compiled(client: httpx.Client, after: str) -> None:
    """The start-up pass clones and compiles in the background: wait for it."""

    def done() -> bool:
        got = client.get(f"{WS}/compile/status")
        rows = got.json()["branches"] if got.status_code == 200 else []
        return bool(rows) and rows[0]["state"] == "succeeded" and rows[0]["finished_at"] > after

    wait_until(done, 60, "the start-up clone and compile")


def test_wiped_clone_cache_is_recloned_to_the_same_revision(
    backend: Backend, tmp_path: Path
) -> None:
    origin = make_origin(tmp_path)
    workspaces_dir = tmp_path / "workspaces"
    env = {
        **backend.process_env(),
        "QUARRY_DATA_DIR": str(tmp_path / "data"),
        "QUARRY_WORKSPACES_DIR": str(workspaces_dir),
        "QUARRY_INPROCESS_WORKERS": "off",
        "QUARRY_REVISION_CACHE_TTL": "0",
        "QUARRY_AUTH": "open",
    }
    assert "registered shop" in _cli(env, "add", "shop", "--origin", origin.as_uri())
    assert "shop" in _cli(env, "list")
    clone = workspaces_dir / "local" / "shop"

    with quarry_process(["serve"], env, tmp_path / "first.log") as server:
        client = httpx.Client(base_url=server.url, timeout=60)
        _wait_compiled(client, "")
        first = client.get(WS).json()
        assert first["current_revision_id"] and first["default_branch"] == "main"
        assert (clone / ".git").is_dir()
        view = "semantics/orders.view.yml"
        got = client.get(f"{WS}/files/{view}")
        body = {
            "content": got.text.replace("label: Orders", "label: Pushed", 1),
            "expected_hash": got.headers["x-quarry-content-hash"],
        }
        assert client.put(f"{WS}/files/{view}", json=body).status_code == 200
        commit = client.post(
            f"{WS}/git/commit", json={"message": "pushed edit", "all": True}
        ).json()
        assert commit["compile"]["current"], commit
        assert client.post(f"{WS}/git/push").status_code == 200
        revision = commit["compile"]["revision_id"]
        assert git(origin, "rev-parse", "main") == commit["commit"]
        assert client.get(WS).json()["current_revision_id"] == revision
        before = client.get(f"{WS}/compile/status").json()["branches"][0]["finished_at"]
        client.close()

    shutil.rmtree(workspaces_dir)
    with quarry_process(["serve"], env, tmp_path / "second.log") as server:
        client = httpx.Client(base_url=server.url, timeout=60)
        _wait_compiled(client, before)
        assert (clone / ".git").is_dir(), "re-cloned at start"
        assert git(clone, "rev-parse", "HEAD") == commit["commit"]
        assert client.get(WS).json()["current_revision_id"] == revision
        status = client.get(f"{WS}/compile/status").json()["branches"][0]
        assert status["finished_at"] > before, "compiled again after the re-clone"
        assert status["revision_id"] == revision and status["promoted"]
        label = client.get(f"{WS}/definitions/view/orders").json()["body"]["label"]
        assert label == "Pushed"

        remote = {**env, "QUARRY_TOKEN": "unused-in-open-mode"}
        assert "shop" in _cli(remote, "list", "--url", server.url)
        assert "removed shop" in _cli(remote, "remove", "shop", "--url", server.url)
        assert client.get(WS).status_code == 404
        assert not clone.exists()
        client.close()
