"""The IDE page over plain HTTP against a real ``quarry serve`` (open mode, SQLite):
the page's policy (a fresh style nonce per response, scripts 'self' only), the editor
library linked by its hashed name and only from the IDE page, the schemas the
editor completes and checks with, and the compile events that follow a save."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from quarry.demo import create_demo_workspace
from quarry.web.assets import STATIC_DIR
from quarry.web.ide import SCHEMA_MODELS
from tests.support.processes import ServerProcess, quarry_process

CONFIG = re.compile(r'<script type="application/json" id="ide-config">(.*?)</script>', re.S)
BROKEN = "apps/broken.app.yml"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("ide-http")
    root = create_demo_workspace(tmp / "shop")
    for args in (("init", "-q", "-b", "main"), ("add", "-A")):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "demo"],
        cwd=root,
        check=True,
        capture_output=True,
    )
    env = {"QUARRY_DATA_DIR": str(tmp / "data"), "COLUMNS": "120"}
    with quarry_process(["serve", str(root), "--name", "shop"], env, tmp / "serve.log") as srv:
        yield srv


def _config(html: str) -> dict[str, Any]:
    found = CONFIG.search(html)
    assert found is not None
    config: dict[str, Any] = json.loads(found.group(1))
    return config


def test_the_page_has_a_fresh_style_nonce_and_links_the_editor_by_hash(
    server: ServerProcess,
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        index = c.get("/ide")
        assert index.status_code == 303 and index.headers["location"] == "/ide/shop"
        first, second = c.get("/ide/shop"), c.get("/ide/shop")
        assert first.status_code == 200
        nonces = []
        for page in (first, second):
            csp = page.headers["content-security-policy"]
            nonce = _config(page.text)["styleNonce"]
            assert f"style-src 'self' 'nonce-{nonce}'" in csp
            assert "script-src 'self';" in csp and "unsafe-eval" not in csp
            assert "style-src-attr 'unsafe-inline'" in csp
            nonces.append(nonce)
        assert nonces[0] != nonces[1], "a nonce is made per response"
        editor = _config(first.text)["editorUrl"]
        assert re.fullmatch(r"/static/vendor/codemirror\.min\.[0-9a-f]{12}\.js", editor)
        got = c.get(editor)
        assert got.status_code == 200 and "immutable" in got.headers["cache-control"]
        assert got.headers["content-type"].startswith("text/javascript")
        assert "codemirror" not in c.get("/").text, "the editor loads on the IDE page only"
        assert c.get("/ide/nope").status_code == 404


def test_the_committed_bundle_is_the_one_the_readme_pins() -> None:
    bundle = STATIC_DIR / "vendor" / "codemirror.min.js"
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert f"{digest}  codemirror.min.js" in (STATIC_DIR / "vendor" / "README.md").read_text()
    licences = (STATIC_DIR / "vendor" / "codemirror.LICENSE.txt").read_text()
    for package in ("@codemirror/view", "@codemirror/lang-yaml", "@lezer/yaml", "yaml"):
        assert f"==== {package} " in licences


def test_the_schemas_cover_every_kind_and_its_other_spellings(server: ServerProcess) -> None:
    got = httpx.get(server.url + "/ide/schemas.json", timeout=30)
    assert got.status_code == 200
    schemas = got.json()
    assert set(schemas) == set(SCHEMA_MODELS)
    assert {"title", "tasks", "display"} <= set(schemas["app"]["properties"])
    assert schemas["app"].get("additionalProperties") is False  # apps refuse unknown keys
    assert {"repositories", "data_repos"} <= set(schemas["config"]["properties"])


def _frames(resp: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    name, data = "message", ""
    for line in resp.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "":
            if data:
                yield name, json.loads(data)
            name, data = "message", ""


def _until(frames: Iterator[tuple[str, dict[str, Any]]], want: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    for name, data in frames:
        if name == "status" and want(data):
            return data
        assert time.monotonic() < deadline, "the compile status never got there"
    raise AssertionError("the stream ended")


def test_compile_events_follow_a_save(server: ServerProcess, tmp_path: Path) -> None:
    def main(status: dict[str, Any]) -> dict[str, Any]:
        return next((b for b in status["branches"] if b["branch"] == "main"), {})

    with (
        httpx.Client(base_url=server.url, timeout=60) as c,
        c.stream("GET", "/ide/shop/compile/events") as events,
    ):
        assert events.status_code == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        frames = _frames(events)
        name, first = next(frames)
        assert name == "status" and first["workspace"] == "shop"
        put = c.put(
            f"/api/v1/workspaces/shop/files/{BROKEN}",
            json={"content": "title: x\ncolour: red\n", "expected_hash": None},
        )
        assert put.status_code == 200, put.text
        failed = _until(frames, lambda s: main(s).get("state") == "failed", 60)
        problems = main(failed)["problems"]
        assert any(p["path"] == BROKEN and p["line"] == 2 for p in problems), problems
        gone = c.delete(
            f"/api/v1/workspaces/shop/files/{BROKEN}", params={"expected_hash": put.json()["hash"]}
        )
        assert gone.status_code == 200, gone.text
        _until(frames, lambda s: main(s).get("state") == "succeeded", 60)
