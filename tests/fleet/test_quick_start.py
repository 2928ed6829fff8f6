"""The README's quick start, run from a fresh clone of the committed tree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ServerProcess, wait_healthy
from tests.support.services import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_readme_names_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.+?)\n```", quick_start)
    assert commands == ["scripts/demo", "scripts/test"]
    ci = (REPO / ".ci" / "run").read_text()
    assert "exec scripts/test" in ci


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_demo_command_from_a_fresh_clone(tmp_path: Path) -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUARRY_", "VIRTUAL_ENV"))}
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["scripts/demo", "--port", str(port)],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        wait_healthy(server, timeout=240)
        # The URL a person opens is the one printed, and it is the demo dashboard.
        printed = re.findall(r"dashboard: (http://\S+)", server.log())
        assert printed == [f"{server.url}/workspaces/demo/apps/sales_overview"], server.log()
        page = httpx.get(printed[0], timeout=10)
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert "Sales overview" in page.text
        listing = httpx.get(f"{server.url}/api/v1/workspaces/demo/definitions", timeout=10)
        assert listing.status_code == 200
        assert len(listing.json()["definitions"]) == 7
        assert (clone / "quarry-demo" / "config.yml").is_file()
    finally:
        server.stop()
