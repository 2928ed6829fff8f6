"""The IDE API is tenant-scoped and role-checked through the one principal hook:
another tenant's workspace does not exist for a caller, viewers cannot change files
nor stage, unstage or commit (the git index is compared too), commits carry the
token's identity, registering needs an admin."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.factory.gitrepos import git
from tests.support.tenancy import ACME_WS, postgres_settings, s3_url, two_tenants

VIEW = "semantics/orders.view.yml"


def test_file_and_git_routes_are_scoped_and_role_checked(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    pg_database: str,
    tmp_path: Path,
) -> None:
    settings = postgres_settings(pg_database, s3_url(request, monkeypatch), tmp_path)
    with two_tenants(settings, tmp_path) as dep:
        root = dep.roots["acme"]
        git(root, "init", "-q", "-b", "main")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "seed")
        ws = f"/api/v1/workspaces/{ACME_WS}"
        before = (root / VIEW).read_bytes()
        # one change staged, one not: a stage or unstage by the wrong caller would show
        (root / "docs" / "staged.md").write_text("staged\n")
        git(root, "add", "docs/staged.md")
        (root / "docs" / "unstaged.md").write_text("unstaged\n")
        index = git(root, "diff", "--cached", "--raw", "HEAD")

        with dep.client("globex:admin") as other:
            for method, path in [
                ("GET", f"{ws}/files"),
                ("GET", f"{ws}/files/{VIEW}"),
                ("PUT", f"{ws}/files/{VIEW}"),
                ("DELETE", f"{ws}/files/{VIEW}"),
                ("GET", f"{ws}/git/status"),
                ("POST", f"{ws}/git/commit"),
                ("POST", f"{ws}/git/stage"),
                ("POST", f"{ws}/git/unstage"),
                ("GET", f"{ws}/git/diff?staged=true"),
                ("POST", f"{ws}/draft-runs"),
                ("POST", f"{ws}/compile"),
                ("GET", f"{ws}/compile/status"),
                ("DELETE", ws),
            ]:
                body: dict[str, object] | None = None
                if method == "PUT":
                    body = {"content": "x", "expected_hash": None}
                elif path.endswith("commit"):
                    body = {"message": "m"}
                elif path.endswith("stage"):
                    body = {"paths": [VIEW]}
                elif path.endswith("draft-runs"):
                    body = {"name": "workflows/monthly_revenue"}
                got = other.request(method, path, json=body)
                assert got.status_code == 404, (method, path, got.status_code, got.text)

        with dep.client("acme:viewer") as viewer:
            got = viewer.get(f"{ws}/files/{VIEW}")
            assert got.status_code == 200
            digest = got.headers["x-quarry-content-hash"]
            body = {"content": "x: 1\n", "expected_hash": digest}
            assert viewer.put(f"{ws}/files/{VIEW}", json=body).status_code == 403
            assert viewer.post(f"{ws}/git/commit", json={"message": "m"}).status_code == 403
            for route, path in (("stage", "docs/unstaged.md"), ("unstage", "docs/staged.md")):
                got = viewer.post(f"{ws}/git/{route}", json={"paths": [path]})
                assert got.status_code == 403, (route, got.text)
            status = viewer.get(f"{ws}/git/status").json()  # a viewer reads the split
            assert status["staged"] == [{"path": "docs/staged.md", "code": "A"}]
            assert status["unstaged"] == [{"path": "docs/unstaged.md", "code": "?"}]
        assert (root / VIEW).read_bytes() == before
        assert git(root, "diff", "--cached", "--raw", "HEAD") == index

        with dep.client("acme:editor") as editor:
            text = before.decode().replace("label: Orders", "label: Acme", 1)
            body = {"content": text, "expected_hash": digest}
            assert editor.put(f"{ws}/files/{VIEW}", json=body).status_code == 200
            assert editor.post(f"{ws}/git/unstage", json={"paths": ["docs/staged.md"]}).is_success
            staged = editor.post(f"{ws}/git/stage", json={"paths": [VIEW]})
            assert staged.status_code == 200, staged.text
            assert staged.json()["staged"] == [{"path": VIEW, "code": "M"}]
            committed = editor.post(f"{ws}/git/commit", json={"message": "by a token"})
            assert committed.status_code == 200, committed.text
            assert git(root, "show", "--name-only", "--format=", "HEAD") == VIEW
            author = git(root, "log", "-1", "--format=%an|%ae|%cn")
            name, email, committer = author.split("|")
            assert name == committer == "t" and email.endswith("@tokens.quarry.invalid")
            origin = {"name": "new", "origin": "https://example.com/x.git"}
            assert editor.post("/api/v1/workspaces", json=origin).status_code == 403
            assert editor.delete(ws).status_code == 403
            # local mode: the folder is the truth, so the commit's tree is current
            current = editor.get(ws).json()["current_revision_id"]
            assert committed.json()["compile"]["revision_id"] == current

        with dep.client(None) as anonymous:
            assert anonymous.get(f"{ws}/files").status_code == 401
