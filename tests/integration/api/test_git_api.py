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

    unstaged = api.client.post(f"{WS}/git/commit", json={"message": "Rename the label"})
    assert unstaged.status_code == 409 and "nothing is staged" in unstaged.json()["message"]
    staged = api.client.post(f"{WS}/git/stage", json={"paths": [VIEW]})
    assert staged.status_code == 200, staged.text
    assert staged.json()["staged"] == [{"path": VIEW, "code": "M"}]
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
    again = api.client.post(f"{WS}/git/commit", json={"message": "nothing", "all": True})
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
    assert (
        api.client.post(f"{WS}/git/commit", json={"message": "mine", "all": True}).status_code
        == 200
    )
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
    committed = api.client.post(f"{WS}/git/commit", json={"message": "feature", "all": True}).json()
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
    api.client.post(f"{WS}/git/commit", json={"message": "other", "all": True})
    api.client.post(f"{WS}/git/switch", json={"branch": "main"})
    _edit_view(api, "label: Orders", "label: Dirty")
    before = (api.head(), api.porcelain(), (api.root / VIEW).read_bytes())
    got = api.client.post(f"{WS}/git/switch", json={"branch": "other"})
    assert got.status_code == 409, got.text
    assert (api.head(), api.porcelain(), (api.root / VIEW).read_bytes()) == before


def _index(api: FactoryApi) -> str:
    """The staged set as git itself reports it (names and blob ids)."""
    return git(api.root, "diff", "--cached", "--raw", "HEAD")


@pytest.mark.backend_agnostic
def test_stage_unstage_and_commit_the_staged_set(api: FactoryApi) -> None:
    _edit_view(api, "label: Orders", "label: Staged")
    new = "queries/new one.sql"  # a space: paths are literal
    assert api.put(new, "select 1\n", None).status_code == 200
    gone = "queries/monthly_revenue.sql"
    _, digest = api.read(gone)
    deleted = api.client.delete(f"{WS}/files/{gone}", params={"expected_hash": digest})
    assert deleted.status_code == 200, deleted.text

    status = api.client.get(f"{WS}/git/status").json()
    assert status["staged"] == []
    assert {(f["path"], f["code"]) for f in status["unstaged"]} == {
        (VIEW, "M"),
        (new, "?"),
        (gone, "D"),
    }

    got = api.client.post(f"{WS}/git/stage", json={"paths": [VIEW, new, gone]})
    assert got.status_code == 200, got.text
    body = got.json()
    assert {(f["path"], f["code"]) for f in body["staged"]} == {
        (VIEW, "M"),
        (new, "A"),
        (gone, "D"),
    }
    assert body["unstaged"] == [] and not body["clean"]

    # Edited again after staging: the file is in both lists, and each diff shows its part.
    _edit_view(api, "label: Staged", "label: Later")
    both = api.client.get(f"{WS}/git/status").json()
    assert (VIEW, "M") in {(f["path"], f["code"]) for f in both["staged"]}
    assert both["unstaged"] == [{"path": VIEW, "code": "M"}]
    staged_diff = api.client.get(f"{WS}/git/diff", params={"staged": "true"}).text
    assert "-label: Orders" in staged_diff and "+label: Staged" in staged_diff
    assert "+select 1" in staged_diff and "Later" not in staged_diff
    unstaged_diff = api.client.get(f"{WS}/git/diff", params={"staged": "false"}).text
    assert "-label: Staged" in unstaged_diff and "+label: Later" in unstaged_diff
    assert "select 1" not in unstaged_diff
    everything = api.client.get(f"{WS}/git/diff", params={"path": VIEW}).text
    assert "-label: Orders" in everything and "+label: Later" in everything

    # Unstage the new file: it is untracked again, its content untouched.
    got = api.client.post(f"{WS}/git/unstage", json={"paths": [new]})
    assert got.status_code == 200, got.text
    assert (new, "?") in {(f["path"], f["code"]) for f in got.json()["unstaged"]}
    assert new not in {f["path"] for f in got.json()["staged"]}
    assert (api.root / new).read_text() == "select 1\n"

    before = api.head()
    committed = api.client.post(f"{WS}/git/commit", json={"message": "Staged only"})
    assert committed.status_code == 200, committed.text
    assert git(api.root, "rev-parse", "HEAD^") == before
    shown = git(api.root, "show", "--name-status", "--format=%s", "HEAD").splitlines()
    assert shown[0] == "Staged only"
    assert sorted(line for line in shown[1:] if line) == sorted([f"D\t{gone}", f"M\t{VIEW}"])
    assert "label: Staged" in git(api.root, "show", f"HEAD:{VIEW}"), "the staged version"
    after = api.client.get(f"{WS}/git/status").json()
    assert after["staged"] == []
    assert {(f["path"], f["code"]) for f in after["unstaged"]} == {(VIEW, "M"), (new, "?")}


@pytest.mark.backend_agnostic
def test_commit_with_paths_commits_only_those(api: FactoryApi) -> None:
    """The ``paths`` of a commit (the API before staging): those paths are staged and
    committed, and what else was staged stays staged, uncommitted."""
    _edit_view(api, "label: Orders", "label: Named")
    other = "docs/other.md"
    assert api.put(other, "# staged, not named\n", None).status_code == 200
    assert api.client.post(f"{WS}/git/stage", json={"paths": [other]}).status_code == 200
    got = api.client.post(f"{WS}/git/commit", json={"message": "named", "paths": [VIEW]})
    assert got.status_code == 200, got.text
    assert git(api.root, "show", "--name-only", "--format=", "HEAD") == VIEW
    status = api.client.get(f"{WS}/git/status").json()
    assert status["staged"] == [{"path": other, "code": "A"}] and status["unstaged"] == []
    both = api.client.post(f"{WS}/git/commit", json={"message": "m", "paths": [VIEW], "all": True})
    assert both.status_code == 400
    everything = api.client.post(f"{WS}/git/commit", json={"message": "all", "all": True})
    assert everything.status_code == 200, everything.text
    assert api.client.get(f"{WS}/git/status").json()["clean"]


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("route", ["stage", "unstage"])
def test_paths_outside_the_workspace_are_refused_naming_the_path(
    api: FactoryApi, tmp_path: Path, route: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yml").write_text("x: 1\n")
    (api.root / "link").symlink_to(outside)
    _edit_view(api, "label: Orders", "label: Dirty")
    if route == "unstage":
        assert api.client.post(f"{WS}/git/stage", json={"paths": [VIEW]}).status_code == 200
    index = _index(api)
    for path, reason in [
        ("../outside/secret.yml", "'..'"),
        ("/etc/passwd", "absolute"),
        ("link/secret.yml", "symbolic link"),
        ("link", "symbolic link"),
        (".git/config", "'.git'"),
        ("nope/missing.yml", "nothing" if route == "unstage" else "no file"),
        ("*", "nothing" if route == "unstage" else "no file"),  # literal, not a glob
    ]:
        got = api.client.post(f"{WS}/git/{route}", json={"paths": [VIEW, path]})
        assert got.status_code == 400, (path, got.text)
        message = got.json()["message"]
        assert repr(path) in message and reason in message, (path, message)
        assert _index(api) == index, f"{path}: nothing staged or unstaged"
    empty = api.client.post(f"{WS}/git/{route}", json={"paths": []})
    assert empty.status_code == 400
