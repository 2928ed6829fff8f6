"""Factory benchmark: what the IDE API adds on top of the work it must do.

For a generated workspace of ``--defs`` definitions, cloned by a Factory (role all,
SQLite + local object store, real socket, debounce 0) from a bare origin, each round
edits one workflow file and measures, side by side in the same run:

- ``edit -> draft``: ``PUT .../files/{path}`` until ``GET .../compile/status`` shows
  the draft compiled, against the ceiling: the same one-file edit written to disk and
  ``compile_workspace(promote=False)`` called directly on a separate copy (no HTTP,
  no git, no polling);
- ``commit -> live``: ``POST .../git/commit`` (commit + compile + promote) against
  ``git commit`` on the command line plus a direct promoting compile;
- ``git status``: ``GET .../git/status`` against ``git status --porcelain`` run
  directly (the CLI's own cost is the floor of the choice made in docs/factory.md).

Ratios are ceiling / Quarry per round (100% = no overhead), median over rounds.

    .venv/bin/python bench/factory_bench.py --defs 1000 --rounds 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _workspace_gen import generate_workspace, touch_one_file  # noqa: E402
from quarry.api.app import create_app  # noqa: E402
from quarry.core.settings import Settings  # noqa: E402
from quarry.factory.compiler import compile_workspace  # noqa: E402
from quarry.factory.statcache import cache_path  # noqa: E402
from quarry.factory.workspaces import register_path  # noqa: E402
from quarry.node.services import build_services  # noqa: E402

GIT = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.com"]
ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
WS = "/api/v1/workspaces/bench"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run([*GIT, *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return done.stdout


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def serve(app: object) -> tuple[str, uvicorn.Server, threading.Thread]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("server did not start")
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, thread


class Round:
    """One edit, measured through the API and against the ceiling."""

    def __init__(
        self,
        svc: Any,
        client: httpx.Client,
        ceiling_ws: Any,
        ceiling_root: Path,
        ceiling_cache: Path,
        clone: Path,
    ) -> None:
        self.svc, self.client = svc, client
        self.ws, self.root, self.cache, self.clone = ceiling_ws, ceiling_root, ceiling_cache, clone

    def compile(self, *, promote: bool) -> None:
        compile_workspace(
            self.svc.engine,
            self.svc.store,
            self.ws,
            self.root,
            promote=promote,
            stat_cache=self.cache,
        )

    def run(self, generation: int) -> dict[str, tuple[float, float]]:
        # the ceiling: edit on disk, compile directly (a draft); git commit + promote
        rel = touch_one_file(self.root, generation)
        c_draft = timed(lambda: self.compile(promote=False))
        started = time.perf_counter()
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", f"edit {generation}")
        self.compile(promote=True)
        c_commit = time.perf_counter() - started
        c_status = timed(lambda: git(self.root, "status", "--porcelain"))

        # Quarry: the same edit through the API
        client = self.client
        content = (self.root / rel).read_text()
        current = client.get(f"{WS}/files/{rel}").headers["x-quarry-content-hash"]
        before = (client.get(f"{WS}/compile/status").json()["branches"] or [{}])[0]
        before_at = before.get("finished_at") or ""
        started = time.perf_counter()
        got = client.put(f"{WS}/files/{rel}", json={"content": content, "expected_hash": current})
        assert got.status_code == 200, got.text
        while True:
            row = client.get(f"{WS}/compile/status").json()["branches"][0]
            if row["state"] == "succeeded" and (row["finished_at"] or "") > before_at:
                break
            time.sleep(0.002)
        q_draft = time.perf_counter() - started
        q_status = timed(lambda: client.get(f"{WS}/git/status").raise_for_status())
        body = {"message": f"edit {generation}", "all": True}  # stage and commit
        q_commit = timed(lambda: client.post(f"{WS}/git/commit", json=body).raise_for_status())
        assert (self.clone / rel).read_text() == content
        return {
            "edit -> draft": (q_draft, c_draft),
            "commit -> live": (q_commit, c_commit),
            "git status": (q_status, c_status),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--defs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="quarry-factory-bench-"))
    try:
        run(tmp, args.defs, args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, n: int, rounds: int) -> None:
    seed = tmp / "seed"
    generate_workspace(seed, n)
    git(seed, "init", "-q", "-b", "main")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "generated")
    origin = tmp / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    git(seed, "push", "-q", str(origin), "main")
    ceiling_root = tmp / "ceiling"
    shutil.copytree(seed, ceiling_root)

    settings = Settings(
        database_url=f"sqlite:///{tmp / 'state.db'}",
        blob_url=(tmp / "blobs").as_uri(),
        data_dir=tmp / "data",
        workspaces_dir=tmp / "workspaces",
        git_allow_local_origins=True,
        compile_debounce_seconds=0,
        inprocess_workers="off",
        revision_cache_ttl=0,
        auth="open",
    )
    svc = build_services(settings)
    ceiling_ws = register_path(svc.engine, "local", "ceiling", ceiling_root)
    ceiling_cache = cache_path(tmp / "data-ceiling", ceiling_ws.id)
    compile_workspace(svc.engine, svc.store, ceiling_ws, ceiling_root, stat_cache=ceiling_cache)
    url, server, thread = serve(create_app(svc))
    client = httpx.Client(base_url=url, timeout=120)
    created = client.post("/api/v1/workspaces", json={"name": "bench", "origin": str(origin)})
    assert created.status_code == 201, created.text
    clone = tmp / "workspaces" / "local" / "bench"

    rows: dict[str, list[tuple[float, float]]] = {
        "edit -> draft": [],
        "commit -> live": [],
        "git status": [],
    }
    bench = Round(svc, client, ceiling_ws, ceiling_root, ceiling_cache, clone)
    for generation in range(1, rounds + 1):
        for name, pair in bench.run(generation).items():
            rows[name].append(pair)

    print(f"\nFactory benchmark: {n} definitions, {rounds} rounds (one workflow edited each)\n")
    print("| operation | quarry p50 ms | quarry max ms | ceiling p50 ms | ceiling / quarry |")
    print("|---|---|---|---|---|")
    for name, pairs in rows.items():
        quarry = [q for q, _ in pairs]
        ceiling = [c for _, c in pairs]
        ratio = statistics.median(c / q for q, c in pairs)
        print(
            f"| {name} | {statistics.median(quarry) * 1000:.1f} | {max(quarry) * 1000:.1f} | "
            f"{statistics.median(ceiling) * 1000:.1f} | {ratio:.0%} |"
        )
    client.close()
    server.should_exit = True
    thread.join(30)
    svc.close()


if __name__ == "__main__":
    main()
