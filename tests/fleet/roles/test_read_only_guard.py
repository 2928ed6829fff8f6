"""The serve role never loads the Factory package: checked on running processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from quarry.demo import create_demo_workspace
from tests.support.processes import quarry_process

pytestmark = pytest.mark.slow


def test_serve_replica_has_not_imported_the_factory(pg_database: str, tmp_path: Path) -> None:
    root = create_demo_workspace(tmp_path / "shop")
    env = {
        "QUARRY_DATABASE_URL": pg_database,
        "QUARRY_BLOB_URL": (tmp_path / "blobs").as_uri(),
        "QUARRY_DATA_DIR": str(tmp_path / "data"),
    }
    compiled = subprocess.run(
        [sys.executable, "-m", "quarry", "compile", str(root), "--name", "shop"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compiled.returncode == 0, compiled.stderr
    with quarry_process(["serve", "--role", "serve"], env, tmp_path / "serve.log") as serve:
        health = httpx.get(f"{serve.url}/healthz", timeout=10).json()
        assert health["topology"]["role"] == "serve"
        assert health["factory_imported"] is False
        listing = httpx.get(f"{serve.url}/api/v1/workspaces/shop/definitions", timeout=10)
        assert listing.status_code == 200 and listing.json()["definitions"]
        compile_route = httpx.post(f"{serve.url}/api/v1/workspaces/shop/compile", timeout=10)
        # Not mounted here: the proxy answers, and with no QUARRY_IDE_UPSTREAM it says so.
        assert compile_route.status_code == 503
        assert "QUARRY_IDE_UPSTREAM" in compile_route.json()["message"]
    with quarry_process(["serve"], env, tmp_path / "all.log") as local:
        assert httpx.get(f"{local.url}/healthz", timeout=10).json()["factory_imported"] is True


def test_serve_role_refuses_a_workspace_path(pg_database: str, tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "quarry", "serve", str(tmp_path), "--role", "serve"],
        env={**os.environ, "QUARRY_DATABASE_URL": pg_database},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "does not read workspace folders" in refused.stderr
