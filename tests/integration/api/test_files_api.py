"""The file API over a real socket: atomic writes with expected hashes, path attacks
refused with 400 and nothing changed on disk, size and binary limits, compile on
change (local mode promotes; cloud mode's uncommitted edits are drafts)."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from quarry.api.app import create_app
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.factory.workspaces import register_path
from quarry.node.services import build_services
from tests.conftest import Backend
from tests.integration.factory.gitrepos import FactoryApi, factory_api, snapshot
from tests.support.processes import serve_in_thread, wait_until

WS = "/api/v1/workspaces/shop"
VIEW = "semantics/orders.view.yml"


@pytest.fixture
def api(backend: Backend, tmp_path: Path) -> Iterator[FactoryApi]:
    with factory_api(backend, tmp_path, file_max_bytes=100_000) as factory:
        yield factory


@pytest.mark.backend_agnostic
def test_read_write_create_move_delete(api: FactoryApi) -> None:
    text, digest = api.read(VIEW)
    assert api.client.get(f"{WS}/files/{VIEW}").headers["etag"] == f'"{digest}"'
    written = api.put(VIEW, text + "\n# edited\n", digest)
    assert written.status_code == 200, written.text
    assert (api.root / VIEW).read_text() == text + "\n# edited\n"
    stale = api.put(VIEW, "lost update", digest)
    assert stale.status_code == 409 and "changed since you read it" in stale.json()["message"]
    assert stale.json()["details"]["actual_hash"] == written.json()["hash"]

    assert api.put("notes/new.md", "hello", None).status_code == 200
    exists = api.put("notes/new.md", "again", None)
    assert exists.status_code == 409 and "already exists" in exists.json()["message"]
    tree = {f["path"]: f for f in api.client.get(f"{WS}/files").json()["files"]}
    assert tree["notes"]["type"] == "dir" and tree["notes/new.md"]["size"] == 5
    assert not any(p.startswith(".git") for p in tree)

    _, new_hash = api.read("notes/new.md")
    moved = api.client.post(
        f"{WS}/move",
        json={"from": "notes/new.md", "to": "notes/moved.md", "expected_hash": new_hash},
    )
    assert moved.status_code == 200, moved.text
    assert not (api.root / "notes/new.md").exists() and (api.root / "notes/moved.md").exists()
    onto = api.client.post(f"{WS}/move", json={"from": "notes/moved.md", "to": VIEW})
    assert onto.status_code == 409
    wrong = api.client.delete(f"{WS}/files/notes/moved.md", params={"expected_hash": "0" * 64})
    assert wrong.status_code == 409 and (api.root / "notes/moved.md").exists()
    gone = api.client.delete(f"{WS}/files/notes/moved.md", params={"expected_hash": new_hash})
    assert gone.status_code == 200 and not (api.root / "notes/moved.md").exists()
    assert api.client.get(f"{WS}/files/notes/moved.md").status_code == 404


def test_two_writers_with_the_same_hash_one_wins(api: FactoryApi) -> None:
    text, digest = api.read(VIEW)
    barrier = threading.Barrier(8)
    results: list[tuple[int, str]] = []

    def writer(i: int) -> None:
        with httpx.Client(base_url=str(api.client.base_url), timeout=60) as client:
            body = {"content": f"{text}\n# writer {i}\n", "expected_hash": digest}
            barrier.wait()
            got = client.put(f"{WS}/files/{VIEW}", json=body)
            results.append((got.status_code, body["content"]))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(code for code, _ in results)
    assert codes == [200] + [409] * 7, codes
    winner = next(content for code, content in results if code == 200)
    assert (api.root / VIEW).read_text() == winner
    assert not [p for p in os.listdir(api.root / "semantics") if p.endswith(".quarry-tmp")]


def _attack_setup(api: FactoryApi) -> Path:
    outside = api.tmp / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside, api.root / "escape")
    os.symlink(outside / "secret.txt", api.root / "link.yml")
    return outside


ATTACKS = [
    "%2E%2E/x.yml",
    "semantics/%2E%2E/%2E%2E/x.yml",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "escape/secret.txt",
    "escape/new.yml",
    "link.yml",
    ".git/config",
    ".GIT/config",
    "semantics/.git/hooks/pre-commit",
    ".quarry/state.db",
    "a%00b.yml",
    "x" * 300 + ".yml",
    "/".join(["d" * 200] * 6) + "/x.yml",
    "semantics//orders.view.yml",
    "semantics/%2E/orders.view.yml",
    "a%5Cb.yml",
]


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("path", ATTACKS)
def test_path_attacks_are_400_and_change_nothing(api: FactoryApi, path: str) -> None:
    outside = _attack_setup(api)
    before = (snapshot(api.root), snapshot(outside))
    body = {"content": "pwned: true\n", "expected_hash": None}
    url = f"{WS}/files/{path}"
    attempts = [
        api.client.put(url, json=body),
        api.client.put(url, json={**body, "expected_hash": "0" * 64}),
        api.client.get(url),
        api.client.delete(url),
        api.client.post(f"{WS}/move", json={"from": VIEW, "to": unquote(path)}),
        api.client.post(f"{WS}/move", json={"from": unquote(path), "to": "x.yml"}),
    ]
    for got in attempts:
        assert got.status_code in (400, 404, 405), (got.request.method, got.status_code, got.text)
    assert attempts[0].status_code == 400, attempts[0].text
    assert (
        attempts[0].json()["error"] == "bad_request" and "refused" in attempts[0].json()["message"]
    )
    assert (snapshot(api.root), snapshot(outside)) == before


@pytest.mark.backend_agnostic
def test_listing_never_follows_links(api: FactoryApi) -> None:
    _attack_setup(api)
    tree = {f["path"]: f["type"] for f in api.client.get(f"{WS}/files").json()["files"]}
    assert tree["escape"] == "symlink" and "escape/secret.txt" not in tree
    assert api.client.get(f"{WS}/files", params={"path": "escape"}).status_code == 400
    assert api.client.get(f"{WS}/files", params={"path": "../"}).status_code == 400


@pytest.mark.backend_agnostic
def test_size_and_binary_limits(api: FactoryApi) -> None:
    before = snapshot(api.root)
    big = api.put("notes/big.md", "x" * 100_001, None)
    assert big.status_code == 400 and "limit" in big.json()["message"]
    binary = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\xff").decode()
    refused = api.client.put(
        f"{WS}/files/images/logo.png",
        json={"content": binary, "encoding": "base64", "expected_hash": None},
    )
    assert refused.status_code == 400 and "dataset folder" in refused.json()["message"]
    nul = api.put("notes/nul.md", "a\x00b", None)
    assert nul.status_code == 400
    bad64 = api.client.put(
        f"{WS}/files/.db/x.bin",
        json={"content": "!!!", "encoding": "base64", "expected_hash": None},
    )
    assert bad64.status_code == 400
    extra = api.client.put(f"{WS}/files/x.md", json={"content": "", "expected_hash": None, "x": 1})
    assert extra.status_code == 400
    huge = api.client.put(f"{WS}/files/x.md", content=b"{" + b" " * 70_000_000 + b"}")
    assert huge.status_code == 413 and huge.json()["limit"] == "dataset_file_max_bytes"
    assert snapshot(api.root) == before
    allowed = api.client.put(
        f"{WS}/files/.db/logo.parquet",
        json={"content": binary, "encoding": "base64", "expected_hash": None},
    )
    assert allowed.status_code == 200, allowed.text
    assert (api.root / ".db/logo.parquet").read_bytes() == base64.b64decode(binary)


def test_cloud_write_compiles_a_draft_and_errors_are_readable(api: FactoryApi) -> None:
    current = api.current()
    text, digest = api.read(VIEW)
    # An unknown key is only a warning in a view (as in Oxy); a bad enum value is an error.
    broken = api.put(VIEW, text.replace("type: number", "type: nmber", 1), digest)
    assert broken.status_code == 200
    failed = api.wait_compiled("main")
    assert failed["state"] == "failed" and failed["revision_id"] is None
    assert failed["problems"][0]["path"] == VIEW and failed["problems"][0]["line"] > 1
    assert api.current() == current
    fixed = api.put(VIEW, text.replace("label: Orders", "label: Fixed", 1), broken.json()["hash"])
    assert fixed.status_code == 200
    draft = api.wait_compiled("main", after=failed["finished_at"])
    assert draft["state"] == "succeeded" and draft["draft"] and not draft["promoted"]
    assert api.current() == current
    pinned = api.client.get(
        f"{WS}/definitions/view/orders", params={"revision": draft["revision_id"]}
    )
    assert pinned.json()["body"]["label"] == "Fixed"


def test_local_mode_write_compiles_and_promotes(backend: Backend, tmp_path: Path) -> None:
    svc = build_services(
        backend.settings(
            data_dir=tmp_path / "data",
            revision_cache_ttl=0,
            inprocess_workers="off",
            compile_debounce_seconds=0.05,
        )
    )
    root = create_demo_workspace(tmp_path / "shop")
    register_path(svc.engine, "local", "shop", root)
    first = compile_local(svc.engine, svc.store, "local", root, "shop").revision_id
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url, timeout=30) as client:
        got = client.get(f"{WS}/files/{VIEW}")
        edited = got.text.replace("label: Orders", "label: Local", 1)
        body = {"content": edited, "expected_hash": got.headers["x-quarry-content-hash"]}
        assert client.put(f"{WS}/files/{VIEW}", json=body).status_code == 200

        def promoted() -> bool:
            current = client.get(WS).json()["current_revision_id"]
            return current not in (None, first)

        wait_until(promoted, 30, "the debounced compile to promote")
        label = client.get(f"{WS}/definitions/view/orders").json()["body"]["label"]
        assert label == "Local"

        def recorded() -> bool:  # the status row is written just after the promotion
            rows = client.get(f"{WS}/compile/status").json()["branches"]
            return bool(rows) and rows[0]["state"] == "succeeded"

        wait_until(recorded, 30, "the compile status")
        status = client.get(f"{WS}/compile/status").json()["branches"]
        assert status[0]["promoted"] and status[0]["draft"] is False
    svc.close()


def test_a_requested_compile_holds_the_factory_up_until_done(
    backend: Backend, tmp_path: Path
) -> None:
    with factory_api(backend, tmp_path, compile_debounce_seconds=1.0) as api:
        holds = api.svc.holds
        assert holds.by_reason().get("compile", 0) == 0
        text, digest = api.read(VIEW)
        assert api.put(VIEW, text + "\n# a\n", digest).status_code == 200
        assert holds.by_reason().get("compile") == 1, "held from the request on"
        api.wait_compiled("main")
        wait_until(lambda: holds.by_reason().get("compile", 0) == 0, 10, "the hold's release")
