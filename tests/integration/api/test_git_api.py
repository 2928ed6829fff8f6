"""The git API against a real bare origin, over a real socket: clone, write, commit,
push; refused pulls and pushes that change nothing; branches compile to drafts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Backend
from tests.integration.factory.gitrepos import (
    FactoryApi,
    factory_api,
    git,
    other_clone,
    snapshot,
)

WS = "/api/v1/workspaces/shop"
VIEW = "semantics/orders.view.yml"


@pytest.fixture
def api(backend: Backend, tmp_path: Path) -> Iterator[FactoryApi]:
    with factory_api(backend, tmp_path) as factory:
        yield factory


def _edit_view(api: FactoryApi, old: str, new: str) -> str:
    text, digest = api.read(VIEW)
    assert old in text
    written = api.put(VIEW, text.replace(old, new, 1), digest)
    assert written.status_code == 200, written.text
    return str(written.json()["hash"])


def test_write_commit_push_reaches_origin_and_is_served(api: FactoryApi) -> None:
    first = api.current()
    assert first is not None, "registering the origin clones and promotes it"
    _edit_view(api, "label: Orders", "label: Order lines")
    draft = api.wait_compiled("main")
    assert draft["draft"] and not draft["promoted"], "uncommitted edits are a draft"
    assert api.current() == first

    status = api.client.get(f"{WS}/git/status").json()
    assert status["branch"] == "main" and not status["clean"]
    assert [f["path"] for f in status["files"]] == [VIEW]
    diff = api.client.get(f"{WS}/git/diff").text
    assert "-label: Orders" in diff and "+label: Order lines" in diff

    committed = api.client.post(f"{WS}/git/commit", json={"message": "Rename the label"})
    assert committed.status_code == 200, committed.text
    body = committed.json()
    assert body["compile"]["state"] == "succeeded" and body["compile"]["current"]
    new_revision = body["compile"]["revision_id"]
    assert new_revision == draft["revision_id"], "same tree, same revision id"
    assert api.current() == new_revision != first

    pushed = api.client.post(f"{WS}/git/push")
    assert pushed.status_code == 200, pushed.text
    assert git(api.origin, "rev-parse", "main") == body["commit"]
    author = git(api.origin, "log", "-1", "--format=%an <%ae>|%s", "main")
    assert author == "Quarry local user <local@quarry.invalid>|Rename the label"

    served = api.client.get(f"{WS}/definitions/view/orders").json()
    assert served["body"]["label"] == "Order lines"
    revision = api.client.get(f"{WS}/revision").json()
    assert revision["revision_id"] == new_revision
    assert revision["git_commit"] == body["commit"] and not revision["git_dirty"]
    log = api.client.get(f"{WS}/git/log", params={"limit": 5}).json()["commits"]
    assert [c["subject"] for c in log] == ["Rename the label", "demo workspace"]

    missing = api.client.post(f"{WS}/git/commit", json={"message": "m", "paths": ["nope.yml"]})
    assert missing.status_code == 400 and "nope.yml" in missing.json()["message"]
    outside = api.client.post(f"{WS}/git/commit", json={"message": "m", "paths": ["../x"]})
    assert outside.status_code == 400
    again = api.client.post(f"{WS}/git/commit", json={"message": "nothing"})
    assert again.status_code == 409 and "nothing to commit" in again.json()["message"]


def _state(api: FactoryApi) -> tuple[str, str, dict[str, bytes], str | None, str]:
    files = {k: v for k, v in snapshot(api.root).items() if not k.startswith(".git/")}
    return api.head(), api.porcelain(), files, api.current(), git(api.origin, "rev-parse", "main")


def _push_from_other(api: FactoryApi, old: str, new: str) -> str:
    other = other_clone(api.origin, api.tmp / "other")
    path = other / VIEW
    path.write_text(path.read_text().replace(old, new, 1))
    git(other, "commit", "-q", "-am", "other change")
    git(other, "push", "-q", "origin", "main")
    return git(other, "rev-parse", "HEAD")


@pytest.mark.backend_agnostic
def test_diverged_pull_and_rejected_push_change_nothing(api: FactoryApi) -> None:
    _edit_view(api, "label: Orders", "label: Mine")
    assert api.client.post(f"{WS}/git/commit", json={"message": "mine"}).status_code == 200
    theirs = _push_from_other(api, "label: Orders", "label: Theirs")
    _edit_view(api, "One row per order line", "Uncommitted edit")  # a dirty file too
    api.wait_compiled("main")
    before = _state(api)

    pulled = api.client.post(f"{WS}/git/pull")
    assert pulled.status_code == 409, pulled.text
    assert "cannot fast-forward" in pulled.json()["message"]
    assert _state(api) == before

    pushed = api.client.post(f"{WS}/git/push")
    assert pushed.status_code == 409, pushed.text
    assert "rejected" in pushed.json()["message"] and "pull" in pushed.json()["message"]
    assert _state(api) == before
    assert git(api.origin, "rev-parse", "main") == theirs


@pytest.mark.backend_agnostic
def test_pull_blocked_by_local_edits_changes_nothing(api: FactoryApi) -> None:
    _push_from_other(api, "label: Orders", "label: Theirs")
    _edit_view(api, "label: Orders", "label: Uncommitted")
    api.wait_compiled("main")
    before = _state(api)
    pulled = api.client.post(f"{WS}/git/pull")
    assert pulled.status_code == 409, pulled.text
    assert "overwritten" in pulled.json()["message"]
    assert _state(api) == before


def test_fast_forward_pull_promotes(api: FactoryApi) -> None:
    first = api.current()
    theirs = _push_from_other(api, "label: Orders", "label: Theirs")
    pulled = api.client.post(f"{WS}/git/pull")
    assert pulled.status_code == 200, pulled.text
    assert pulled.json()["after"] == theirs and pulled.json()["compile"]["current"]
    assert api.current() not in (None, first)
    assert api.client.get(f"{WS}/definitions/view/orders").json()["body"]["label"] == "Theirs"
    again = api.client.post(f"{WS}/git/pull").json()
    assert again["updated"] is False


def test_branch_compiles_to_a_draft_readable_by_pin(api: FactoryApi) -> None:
    main_revision = api.current()
    created = api.client.post(f"{WS}/git/branches", json={"name": "feature/label"})
    assert created.status_code == 201, created.text
    assert api.client.post(f"{WS}/git/branches", json={"name": "feature/label"}).status_code == 409
    switched = api.client.post(f"{WS}/git/switch", json={"branch": "feature/label"})
    assert switched.status_code == 200, switched.text
    _edit_view(api, "label: Orders", "label: Feature")
    committed = api.client.post(f"{WS}/git/commit", json={"message": "feature"}).json()
    assert committed["branch"] == "feature/label"
    draft = committed["compile"]
    assert draft["state"] == "succeeded" and not draft["current"] and not draft["promoted"]
    assert api.current() == main_revision

    pinned = api.client.get(
        f"{WS}/definitions/view/orders", params={"revision": draft["revision_id"]}
    )
    assert pinned.status_code == 200 and pinned.json()["body"]["label"] == "Feature"
    assert api.client.get(f"{WS}/definitions/view/orders").json()["body"]["label"] == "Orders"
    status = api.client.get(f"{WS}/compile/status").json()
    assert status["current_revision_id"] == main_revision and status["default_branch"] == "main"
    feature = next(b for b in status["branches"] if b["branch"] == "feature/label")
    assert feature["draft"] and feature["revision_id"] == draft["revision_id"]

    names = {b["name"]: b for b in api.client.get(f"{WS}/git/branches").json()["branches"]}
    assert names["feature/label"]["current"] and not names["main"]["current"]
    refused = api.client.delete(f"{WS}/git/branches/feature/label")
    assert refused.status_code == 409 and "current branch" in refused.json()["message"]
    assert api.client.post(f"{WS}/git/switch", json={"branch": "main"}).status_code == 200
    assert api.client.delete(f"{WS}/git/branches/main").status_code == 409
    unmerged = api.client.delete(f"{WS}/git/branches/feature/label")
    assert unmerged.status_code == 409
    forced = api.client.delete(f"{WS}/git/branches/feature/label", params={"force": "true"})
    assert forced.status_code == 200, forced.text
    assert api.current() == main_revision


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("name", ["-x", "a..b", "x.lock", "a b", "../main", "@{u}"])
def test_bad_branch_names_are_400(api: FactoryApi, name: str) -> None:
    got = api.client.post(f"{WS}/git/branches", json={"name": name})
    assert got.status_code == 400, got.text
    assert "branch" in got.json()["message"]


@pytest.mark.backend_agnostic
def test_switch_that_would_overwrite_edits_is_refused(api: FactoryApi) -> None:
    api.client.post(f"{WS}/git/branches", json={"name": "other"})
    api.client.post(f"{WS}/git/switch", json={"branch": "other"})
    _edit_view(api, "label: Orders", "label: Other")
    api.client.post(f"{WS}/git/commit", json={"message": "other"})
    api.client.post(f"{WS}/git/switch", json={"branch": "main"})
    _edit_view(api, "label: Orders", "label: Dirty")
    before = (api.head(), api.porcelain(), (api.root / VIEW).read_bytes())
    got = api.client.post(f"{WS}/git/switch", json={"branch": "other"})
    assert got.status_code == 409, got.text
    assert (api.head(), api.porcelain(), (api.root / VIEW).read_bytes()) == before
