"""Real git repositories for Factory tests: a bare origin seeded with the demo
workspace, and clones playing "another developer". Identity is always explicit (CI's
git may have none) and prompts are off."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from quarry.api.app import create_app
from quarry.demo import create_demo_workspace
from quarry.node.services import Services, build_services
from tests.conftest import Backend
from tests.support.processes import serve_in_thread, wait_until

ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
ID = ["-c", "user.name=Other Dev", "-c", "user.email=other@example.com"]


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *ID, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def make_origin(base: Path) -> Path:
    """A bare repository on branch main holding the demo workspace (one commit)."""
    origin = base / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True, env=ENV)
    seed = base / "seed"
    create_demo_workspace(seed)
    git(seed, "init", "-q", "-b", "main")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "demo workspace")
    git(seed, "remote", "add", "origin", str(origin))
    git(seed, "push", "-q", "origin", "main")
    return origin


def other_clone(origin: Path, dest: Path) -> Path:
    git(dest.parent, "clone", "-q", str(origin), str(dest))
    return dest


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (``.git`` included) with its bytes."""
    out: dict[str, bytes] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_symlink():
                out[str(path.relative_to(root))] = b"->" + os.readlink(path).encode()
            else:
                out[str(path.relative_to(root))] = path.read_bytes()
    return out


@dataclass
class FactoryApi:
    client: httpx.Client
    svc: Services
    origin: Path
    tmp: Path

    @property
    def root(self) -> Path:
        workspaces_dir = self.svc.settings.workspaces_dir
        assert workspaces_dir is not None
        return workspaces_dir / "local" / "shop"

    def current(self) -> str | None:
        got = self.client.get("/api/v1/workspaces/shop")
        assert got.status_code == 200, got.text
        value: str | None = got.json()["current_revision_id"]
        return value

    def put(self, path: str, content: str, expected: str | None) -> httpx.Response:
        return self.client.put(
            f"/api/v1/workspaces/shop/files/{path}",
            json={"content": content, "expected_hash": expected},
        )

    def read(self, path: str) -> tuple[str, str]:
        got = self.client.get(f"/api/v1/workspaces/shop/files/{path}")
        assert got.status_code == 200, got.text
        return got.text, got.headers["x-quarry-content-hash"]

    def status(self, branch: str) -> dict[str, Any] | None:
        rows = self.client.get("/api/v1/workspaces/shop/compile/status").json()["branches"]
        return next((r for r in rows if r["branch"] == branch), None)

    def wait_compiled(self, branch: str, after: str | None = None) -> dict[str, Any]:
        """Wait for the background compile of ``branch`` to finish (after ``after``)."""
        found: dict[str, Any] = {}

        def done() -> bool:
            row = self.status(branch)
            if row is None or row["state"] not in ("succeeded", "failed"):
                return False
            if after is not None and (row["finished_at"] or "") <= after:
                return False
            found.update(row)
            return True

        wait_until(done, 30, f"the compile of {branch}")
        return found

    def head(self) -> str:
        return git(self.root, "rev-parse", "HEAD")

    def porcelain(self) -> str:
        return git(self.root, "status", "--porcelain", "--untracked-files=all")


@contextmanager
def factory_api(backend: Backend, tmp: Path, **settings: Any) -> Iterator[FactoryApi]:
    """A Factory (role all) over a real socket with workspace ``shop`` cloned from a
    fresh bare origin."""
    origin = make_origin(tmp)
    values: dict[str, Any] = {
        "data_dir": tmp / "data",
        "workspaces_dir": tmp / "workspaces",
        "git_allow_local_origins": True,
        "revision_cache_ttl": 0,
        "inprocess_workers": "off",
        "compile_debounce_seconds": 0.05,
        "auth": "open",  # tenancy and roles: test_factory_tenancy.py
    }
    values.update(settings)
    svc = build_services(backend.settings(**values))
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url, timeout=60) as c:
        created = c.post("/api/v1/workspaces", json={"name": "shop", "origin": str(origin)})
        assert created.status_code == 201, created.text
        yield FactoryApi(c, svc, origin, tmp)
    svc.close()
