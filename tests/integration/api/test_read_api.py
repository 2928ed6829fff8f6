"""The read API over a real socket, on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from quarry.api.app import create_app
from quarry.demo import create_demo_workspace
from quarry.factory.compiler import CompileResult
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from tests.conftest import Backend
from tests.support.processes import serve_in_thread

WS = "/api/v1/workspaces/shop"


@pytest.fixture
def served(backend: Backend, tmp_path: Path) -> Iterator[tuple[httpx.Client, Path, CompileResult]]:
    svc = build_services(backend.settings(data_dir=tmp_path / "data", revision_cache_ttl=0))
    root = create_demo_workspace(tmp_path / "shop")
    result = compile_local(svc.engine, svc.store, "local", root, "shop")
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url) as client:
        yield client, root, result
    svc.close()


def test_workspaces_and_current_revision(served: tuple[httpx.Client, Path, CompileResult]) -> None:
    client, _, result = served
    listing = client.get("/api/v1/workspaces").json()
    assert [w["name"] for w in listing["workspaces"]] == ["shop"]
    ws = client.get(WS).json()
    assert ws["current_revision_id"] == result.revision_id
    assert ws["updated_at"].endswith("+00:00"), "timestamps are UTC on every backend"
    rev = client.get(f"{WS}/revision")
    assert rev.json()["revision_id"] == result.revision_id
    assert rev.headers["x-quarry-revision"] == result.revision_id


@pytest.mark.backend_agnostic
def test_definitions_by_kind_and_name(served: tuple[httpx.Client, Path, CompileResult]) -> None:
    client, _, _ = served
    listing = client.get(f"{WS}/definitions").json()["definitions"]
    kinds = {d["kind"] for d in listing}
    assert kinds == {"config", "workflow", "app", "agent", "view", "topic"}
    views = client.get(f"{WS}/definitions", params={"kind": "view"}).json()["definitions"]
    assert [v["name"] for v in views] == ["orders"]
    for d in listing:
        got = client.get(f"{WS}/definitions/{d['kind']}/{d['name']}")
        assert got.status_code == 200, got.text
        doc = got.json()
        assert doc["path"] == d["path"] and doc["content_hash"] == d["content_hash"]
    wf = client.get(f"{WS}/definitions/workflow/workflows/monthly_revenue").json()
    assert wf["body"]["tasks"][0]["type"] == "execute_sql"


@pytest.mark.backend_agnostic
def test_strong_etag_and_304(served: tuple[httpx.Client, Path, CompileResult]) -> None:
    client, _, _ = served
    url = f"{WS}/definitions/view/orders"
    first = client.get(url)
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.backend_agnostic
def test_pinning_an_older_revision(
    backend: Backend, served: tuple[httpx.Client, Path, CompileResult], tmp_path: Path
) -> None:
    client, root, first = served
    view = root / "semantics" / "orders.view.yml"
    view.write_text(view.read_text().replace("label: Orders", "label: Changed.", 1))
    svc = build_services(backend.settings(data_dir=tmp_path / "data"))
    second = compile_local(svc.engine, svc.store, "local", root, "shop")
    svc.close()
    assert second.promoted
    now = client.get(f"{WS}/definitions/view/orders")
    old = client.get(f"{WS}/definitions/view/orders", params={"revision": first.revision_id})
    assert now.headers["x-quarry-revision"] == second.revision_id
    assert old.headers["x-quarry-revision"] == first.revision_id
    assert now.headers["etag"] != old.headers["etag"]
    assert "Changed." in json.dumps(now.json()) and "Changed." not in json.dumps(old.json())


def test_revision_files_come_from_the_object_store(
    served: tuple[httpx.Client, Path, CompileResult],
) -> None:
    client, root, _ = served
    got = client.get(f"{WS}/revision/files/queries/monthly_revenue.sql")
    assert got.status_code == 200
    assert got.content == (root / "queries" / "monthly_revenue.sql").read_bytes()
    csv = client.get(f"{WS}/revision/files/.db/orders.csv")
    assert csv.content == (root / ".db" / "orders.csv").read_bytes()


@pytest.mark.backend_agnostic
@pytest.mark.parametrize(
    ("path", "params", "status", "error"),
    [
        ("/api/v1/workspaces/nope", {}, 404, "not_found"),
        (f"{WS}/definitions/view/nope", {}, 404, "not_found"),
        (f"{WS}/definitions/widget/x", {}, 400, "bad_request"),
        (f"{WS}/definitions", {"revision": "0" * 32}, 404, "not_found"),
        (f"{WS}/definitions", {"revision": "../etc"}, 400, "bad_request"),
        (f"{WS}/revision/files/../../etc/passwd", {}, 404, "not_found"),
    ],
)
def test_bad_requests_get_clear_errors(
    served: tuple[httpx.Client, Path, CompileResult],
    path: str,
    params: dict[str, str],
    status: int,
    error: str,
) -> None:
    client, _, _ = served
    got = client.get(path, params=params)
    assert got.status_code == status, got.text
    assert got.json()["error"] == error
    assert got.json()["message"]


@pytest.mark.backend_agnostic
def test_openapi_is_published(served: tuple[httpx.Client, Path, CompileResult]) -> None:
    client, _, _ = served
    spec = client.get("/openapi.json").json()
    assert "/api/v1/workspaces/{workspace}/definitions/{kind}/{name}" in spec["paths"]


@pytest.mark.backend_agnostic
def test_fast_path_answers_exactly_as_the_route(
    served: tuple[httpx.Client, Path, CompileResult],
) -> None:
    """The first GET fills the cache through FastAPI; later ones are answered by the
    fast path. Both must be the same bytes and headers, 304 included."""
    client, _, result = served
    url = f"{WS}/definitions/workflow/workflows/monthly_revenue"
    slow = client.get(url)
    fast = client.get(url)
    keep = ("etag", "x-quarry-revision", "cache-control", "content-type", "content-length")
    assert {k: slow.headers[k] for k in keep} == {k: fast.headers[k] for k in keep}
    assert slow.content == fast.content
    pinned = client.get(url, params={"revision": result.revision_id})
    assert pinned.content == slow.content
    again = client.get(url, params={"revision": result.revision_id})
    assert again.headers["etag"] == pinned.headers["etag"]
    not_modified = client.get(url, headers={"If-None-Match": fast.headers["etag"]})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert client.get(url, params={"revision": "zz"}).status_code == 400
    assert client.get(url, params={"revision": result.revision_id, "x": "1"}).status_code == 200
