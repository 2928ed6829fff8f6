"""Hostile YAML against a real Factory process (``quarry serve``, cloud mode).

A YAML bomb — 30,000 levels of nesting (which segfaulted the C loader and with it
the Factory), a billion-laughs file, a file over the size cap — arrives through the
file API and through git (a commit on the origin, pulled). Each fails its own
compile with a problem at file:line:col; the Factory keeps serving; the revision
that was current stays current.

With the YAML depth guard lifted by its setting, the depth bomb crashes the compile
process instead: the file gets a problem naming the crash, the Factory lives on, and
the same bytes are not parsed again (no crash loop) — counted by the log line and the
``quarry_compile_isolated_failures_total`` metric.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Backend
from tests.integration.factory.gitrepos import git, make_origin, other_clone
from tests.support.processes import ServerProcess, quarry_process, wait_until

pytestmark = pytest.mark.slow
WS = "/api/v1/workspaces/shop"
VIEW = "/api/v1/workspaces/shop/definitions/view/orders"

DEEP = b"tasks: " + b"[" * 30_000 + b"]" * 30_000 + b"\n"  # 60 KB
LAUGHS = (
    "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
        for i in range(8)
    )
).encode()  # about 500 bytes; a billion nodes once expanded
BIG = b"tasks: []\n" + b"# padding\n" * 500_000  # 5 MB, over the 2 MB default cap

DEPTH_PROBLEM = "nested more than 100 levels deep (limit yaml_max_depth)"
ALIAS_PROBLEM = "aliases expand to more than 10000 nodes (limit yaml_max_alias_nodes)"
SIZE_PROBLEM = "the limit is 2000000 bytes (file_max_bytes)"


def _env(backend: Backend, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **backend.process_env(),
        "QUARRY_DATA_DIR": str(tmp_path / "data"),
        "QUARRY_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "QUARRY_INPROCESS_WORKERS": "off",
        "QUARRY_REVISION_CACHE_TTL": "0",
        "QUARRY_AUTH": "open",
        "QUARRY_COMPILE_DEBOUNCE_SECONDS": "0.2",
        **extra,
    }


def _register(env: dict[str, str], origin: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "quarry", "workspace", "add", "shop", "--origin", origin.as_uri()],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _status(client: httpx.Client) -> dict[str, Any]:
    rows = client.get(f"{WS}/compile/status").json()["branches"]
    return next((r for r in rows if r["branch"] == "main"), {})


def _wait_started(client: httpx.Client) -> str:
    """The start-up clone-and-compile; returns the current revision."""
    wait_until(lambda: _status(client).get("state") == "succeeded", 90, "the start-up compile")
    current = client.get(WS).json()["current_revision_id"]
    assert current
    return str(current)


def _problems(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {
        p["path"]: f"{p['line']}:{p['column']}: {p['message']}"
        for p in rows
        if p.get("severity", "error") == "error"
    }


def _still_serving(server: ServerProcess, client: httpx.Client, current: str) -> None:
    assert server.process.poll() is None, f"the Factory died:\n{server.log()[-3000:]}"
    assert client.get("/healthz").status_code == 200
    assert client.get(WS).json()["current_revision_id"] == current, "the revision moved"
    assert client.get(VIEW).status_code == 200


def _push(origin: Path, dest: Path, files: dict[str, bytes], message: str) -> None:
    clone = other_clone(origin, dest)
    for name, data in files.items():
        (clone / name).write_bytes(data)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", message)
    git(clone, "push", "-q", "origin", "main")


def _metric(client: httpx.Client, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_yaml_bombs_through_the_file_api_and_git(backend: Backend, tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    env = _env(backend, tmp_path)
    _register(env, origin)
    with (
        quarry_process(["serve"], env, tmp_path / "factory.log") as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):
        current = _wait_started(client)

        # -- through the file API: written, then compiled in the background --------
        before = _status(client)["finished_at"]
        for name, data in (("deep", DEEP), ("laughs", LAUGHS)):
            put = client.put(
                f"{WS}/files/workflows/{name}.workflow.yml",
                json={"content": data.decode(), "expected_hash": None},
            )
            assert put.status_code == 200, put.text
        too_big = client.put(
            f"{WS}/files/workflows/big.workflow.yml",
            json={"content": BIG.decode(), "expected_hash": None},
        )
        assert too_big.status_code == 400 and "limit" in too_big.json()["message"]

        def compiled_after_writes() -> bool:
            row = _status(client)
            return row.get("state") == "failed" and (row.get("finished_at") or "") > before

        wait_until(compiled_after_writes, 60, "the compile of the written bombs")
        problems = _problems(_status(client)["problems"])
        assert problems["workflows/deep.workflow.yml"] == "1:107: invalid YAML: " + DEPTH_PROBLEM
        assert problems["workflows/laughs.workflow.yml"].endswith(ALIAS_PROBLEM)
        _still_serving(server, client, current)
        for name, data in (("deep", DEEP), ("laughs", LAUGHS)):
            digest = hashlib.sha256(data).hexdigest()
            gone = client.delete(
                f"{WS}/files/workflows/{name}.workflow.yml", params={"expected_hash": digest}
            )
            assert gone.status_code == 200, gone.text

        # -- through git: a commit on the origin, pulled -----------------------------
        bombs = {
            "workflows/deep.workflow.yml": DEEP,
            "workflows/laughs.workflow.yml": LAUGHS,
            "workflows/big.workflow.yml": BIG,
        }
        _push(origin, tmp_path / "other", bombs, "three bombs")
        pulled = client.post(f"{WS}/git/pull")
        assert pulled.status_code == 200, pulled.text
        result = pulled.json()["compile"]
        assert result["state"] == "failed", result
        problems = _problems(result["problems"])
        assert problems["workflows/deep.workflow.yml"] == "1:107: invalid YAML: " + DEPTH_PROBLEM
        assert problems["workflows/laughs.workflow.yml"].endswith(ALIAS_PROBLEM)
        assert problems["workflows/big.workflow.yml"].startswith(
            f"1:1: the file is {len(BIG)} bytes"
        )
        assert problems["workflows/big.workflow.yml"].endswith(SIZE_PROBLEM)
        _still_serving(server, client, current)

    # A restart compiles the same working copy at start: refused again, no crash.
    with (
        quarry_process(["serve"], env, tmp_path / "restart.log") as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):
        wait_until(lambda: _status(client).get("state") == "failed", 90, "start-up compile")
        assert "workflows/deep.workflow.yml" in _problems(_status(client)["problems"])
        _still_serving(server, client, current)


def test_a_file_that_crashes_the_compile_process_fails_alone_once(
    backend: Backend, tmp_path: Path
) -> None:
    """The depth guard lifted: the C loader overflows its stack, in the compile process."""
    origin = make_origin(tmp_path)
    env = _env(backend, tmp_path, QUARRY_YAML_MAX_DEPTH="10000000")
    _register(env, origin)
    crashed = 'quarry_compile_isolated_failures_total{reason="crash"}'
    with (
        quarry_process(["serve"], env, tmp_path / "factory.log") as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):
        current = _wait_started(client)
        _push(origin, tmp_path / "other", {"workflows/deep.workflow.yml": DEEP}, "poison")
        pulled = client.post(f"{WS}/git/pull").json()["compile"]
        assert pulled["state"] == "failed", pulled
        problem = _problems(pulled["problems"])["workflows/deep.workflow.yml"]
        assert problem == "1:1: the compile process crashed (SIGSEGV) reading this file"
        _still_serving(server, client, current)
        assert _metric(client, crashed) == 1

        # Compiled again (an explicit compile, then an edit elsewhere): the poison
        # file's problem is repeated, but its bytes are not parsed again.
        again = client.post(f"{WS}/compile")
        assert again.status_code == 422, again.text
        assert "crashed (SIGSEGV)" in again.text
        before = _status(client)["finished_at"]
        edited = client.get(f"{WS}/files/semantics/orders.view.yml")
        put = client.put(
            f"{WS}/files/semantics/orders.view.yml",
            json={
                "content": edited.text.replace("label: Orders", "label: Edited", 1),
                "expected_hash": edited.headers["x-quarry-content-hash"],
            },
        )
        assert put.status_code == 200, put.text
        wait_until(
            lambda: (_status(client).get("finished_at") or "") > before,
            60,
            "the compile after the edit",
        )
        assert (
            "crashed (SIGSEGV)"
            in _problems(_status(client)["problems"])["workflows/deep.workflow.yml"]
        )
        assert _metric(client, crashed) == 1, "the poison file was parsed again"
        assert server.log().count("compile process failed on workflows/deep.workflow.yml") == 1
        _still_serving(server, client, current)
