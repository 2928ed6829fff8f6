"""The Factory's parts on a real disk and real git: path confinement, the credential
helper and scrubbing, git timeouts, origin validation, the debouncer and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from quarry.core.errors import BadRequest
from quarry.factory.autocompile import AutoCompiler
from quarry.factory.git import GitRunner, GitTimeout
from quarry.factory.paths import check_relpath, confine
from quarry.factory.workspaces import check_name, check_origin
from tests.support.processes import wait_until


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/abs",
        "../x",
        "a/../../x",
        "a//b",
        "./a",
        ".git/config",
        "x/.Git/HEAD",
        ".quarry/x",
        "a\x00b",
        "a\\b",
        "C:/x",
        "n" * 256,
        "/".join(["d" * 100] * 11),
        "a\nb",
    ],
)
def test_bad_relpaths_are_refused(path: str) -> None:
    with pytest.raises(BadRequest, match="refused"):
        check_relpath(path)


def test_good_relpaths_pass(tmp_path: Path) -> None:
    assert check_relpath("semantics/orders.view.yml") == "semantics/orders.view.yml"
    assert check_relpath(".db/orders.csv") == ".db/orders.csv"
    assert check_relpath("a.git/x.gitignore") == "a.git/x.gitignore"
    assert confine(tmp_path, "new/dir/file.yml") == tmp_path.resolve() / "new/dir/file.yml"


def test_symlinks_are_refused_inside_or_out(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "real").mkdir(parents=True)
    os.symlink(root / "real", root / "inside")
    os.symlink(tmp_path, root / "outside")
    (root / "file.yml").write_text("x")
    for path in ("inside/x.yml", "outside/x.yml", "outside"):
        with pytest.raises(BadRequest, match="symbolic link"):
            confine(root, path)
    with pytest.raises(BadRequest, match="a parent of this path is a file"):
        confine(root, "file.yml/x")


def test_credential_helper_answers_from_the_environment_only(tmp_path: Path) -> None:
    runner = GitRunner(credentials={"git.example.com": "robot:s3cr3t-token"})
    url = "https://git.example.com/team/repo.git"
    done = runner.run(
        tmp_path,
        ["credential", "fill"],
        url=url,
        input_text="protocol=https\nhost=git.example.com\npath=team/repo.git\n\n",
    )
    assert "username=robot" in done.stdout and "password=s3cr3t-token" in done.stdout
    assert all("s3cr3t" not in arg for arg in done.args), "never in argv"
    token_only = GitRunner(credentials={"git.example.com": "ghp_abcdef"})
    env = token_only._env(url, None)
    assert (
        env["QUARRY_GIT_USERNAME"] == "x-access-token"
        and env["QUARRY_GIT_PASSWORD"] == "ghp_abcdef"
    )
    assert "QUARRY_GIT_PASSWORD" not in runner._env("https://other.example.com/x.git", None)
    scrubbed = runner.scrub(
        "fatal: https://robot:s3cr3t-token@git.example.com/ failed s3cr3t-token"
    )
    assert "s3cr3t" not in scrubbed and "robot:" not in scrubbed


def test_git_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    runner = GitRunner(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(GitTimeout, match=r"did not finish within 0\.5s"):
        runner.run(tmp_path, ["-c", "alias.slow=!sleep 20", "slow"])
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("url", "local", "ok"),
    [
        ("https://github.com/acme/analytics.git", False, True),
        ("git@github.com:acme/analytics.git", False, True),
        ("ssh://git@host/x.git", False, True),
        ("file:///srv/repo.git", False, False),
        ("/srv/repo.git", False, False),
        ("/srv/repo.git", True, True),
        ("ext::sh -c touch% /tmp/pwned", True, False),
        ("--upload-pack=touch /tmp/pwned", True, False),
        ("https://user:secret@github.com/acme/x.git", False, False),
        ("ftp://host/x", True, False),
    ],
)
def test_origin_urls(url: str, local: bool, ok: bool) -> None:
    if ok:
        assert check_origin(url, allow_local=local) == url
    else:
        with pytest.raises(BadRequest):
            check_origin(url, allow_local=local)


@pytest.mark.parametrize("name", ["", "..", ".hidden", "a/b", "a b", "x" * 101, "-x"])
def test_bad_workspace_names(name: str) -> None:
    with pytest.raises(BadRequest):
        check_name(name)


def test_debouncer_coalesces_a_burst_and_compiles_the_last_change() -> None:
    compiled: list[str] = []
    gate = threading.Event()

    def compile_fn(key: str) -> None:
        compiled.append(key)
        gate.wait(10)

    auto = AutoCompiler(compile_fn, debounce=0.2)
    auto.start()
    try:
        for _ in range(10):
            auto.request("t/a")
        auto.request("t/b")
        wait_until(lambda: len(compiled) == 1, 10, "the first compile")
        auto.request("t/a")  # arrives while compiling: compiled again afterwards
        gate.set()
        wait_until(lambda: not auto.pending(), 10, "the queue to drain")
        assert sorted(compiled) == ["t/a", "t/a", "t/b"]
    finally:
        auto.stop()


def test_cli_add_list_remove_locally(tmp_path: Path) -> None:
    from quarry.demo import create_demo_workspace

    root = create_demo_workspace(tmp_path / "shop")
    env = {**os.environ, "QUARRY_DATA_DIR": str(tmp_path / "data")}

    def cli(*args: str, code: int = 0) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "quarry", "workspace", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == code, done.stdout + done.stderr
        return done.stdout + done.stderr

    assert "registered shop" in cli("add", "shop", "--path", str(root))
    assert "registered other" in cli("add", "other", "--origin", "https://example.com/x.git")
    listed = cli("list")
    assert "shop" in listed and "other" in listed and "git" in listed
    assert "exactly one of" in cli("add", "x", code=1)
    assert "invalid workspace name" in cli("add", "../x", "--path", str(root), code=1)
    assert "only be registered on the Factory" in cli(
        "add", "x", "--path", str(root), "--url", "http://127.0.0.1:9", code=1
    )
    assert "cannot reach" in cli("list", "--url", "http://127.0.0.1:9", code=1)
    assert "removed other" in cli("remove", "other")
    assert "other" not in cli("list")
    assert "not found" in cli("remove", "other", code=1)
    assert root.is_dir(), "a local folder is never deleted"


def test_status_snapshot_parses_renames_untracked_and_spaces(tmp_path: Path) -> None:
    from quarry.factory.git import WorkingCopyGit, head_branch
    from tests.integration.factory.gitrepos import git

    assert head_branch(tmp_path) == ""
    git(tmp_path, "init", "-q", "-b", "trunk")
    assert head_branch(tmp_path) == "trunk"
    wc = WorkingCopyGit(tmp_path, GitRunner())
    assert wc.snapshot() == ("trunk", None, [])
    (tmp_path / "a.yml").write_text("a: 1\n")
    (tmp_path / "b.yml").write_text("b: 1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "one")
    git(tmp_path, "mv", "a.yml", "renamed one.yml")
    (tmp_path / "b.yml").write_text("b: 2\n")
    (tmp_path / "new file.md").write_text("x")
    branch, head, files = wc.snapshot()
    assert branch == "trunk" and head == git(tmp_path, "rev-parse", "HEAD")
    assert files == [
        {"index": " ", "worktree": "M", "path": "b.yml"},
        {"index": "R", "worktree": " ", "path": "renamed one.yml", "from": "a.yml"},
        {"index": "?", "worktree": "?", "path": "new file.md"},
    ]
    git(tmp_path, "checkout", "-q", "--detach")
    assert head_branch(tmp_path) == "(detached)" and wc.snapshot()[0] is None


def test_commit_never_includes_quarry_state_or_partial_writes(tmp_path: Path) -> None:
    from quarry.factory.git import Identity, WorkingCopyGit
    from tests.integration.factory.gitrepos import git

    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "config.yml").write_text("databases: []\n")
    (tmp_path / ".quarry").mkdir()
    (tmp_path / ".quarry" / "state.db").write_bytes(b"sqlite")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".x.yml.0123.quarry-tmp").write_text("partial")
    wc = WorkingCopyGit(tmp_path, GitRunner())
    wc.stage(["sub"])  # a folder holding only a partial write: nothing to stage
    assert wc.changes()["staged"] == []
    wc.commit("first", Identity("Ann", "ann@example.com"), everything=True)
    committed = git(tmp_path, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert committed == ["config.yml"]
    assert git(tmp_path, "log", "-1", "--format=%an <%ae>") == "Ann <ann@example.com>"


def test_staging_before_the_first_commit(tmp_path: Path) -> None:
    """A repository with no commit yet: unstaging forgets the new file (there is no
    HEAD to restore from), the diffs compare with the empty tree, and the first commit
    records only what is staged."""
    from quarry.factory.git import Identity, WorkingCopyGit
    from tests.integration.factory.gitrepos import git

    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.yml").write_text("a: 1\n")
    (tmp_path / "b.yml").write_text("b: 2\n")
    wc = WorkingCopyGit(tmp_path, GitRunner())
    assert "+a: 1" in wc.diff(None) and "+b: 2" in wc.diff(None)
    wc.stage(["a.yml", "b.yml"])
    wc.unstage(["b.yml"])
    changes = wc.changes()
    assert changes["staged"] == [{"path": "a.yml", "code": "A"}]
    assert changes["unstaged"] == [{"path": "b.yml", "code": "?"}]
    staged, unstaged = wc.diff(None, staged=True), wc.diff(None, staged=False)
    assert "+a: 1" in staged and "b.yml" not in staged
    assert "+b: 2" in unstaged and "a.yml" not in unstaged
    wc.commit("first", Identity("Ann", "ann@example.com"))
    assert git(tmp_path, "ls-tree", "-r", "--name-only", "HEAD") == "a.yml"
    assert wc.changes()["unstaged"] == [{"path": "b.yml", "code": "?"}]


@pytest.mark.slow
def test_staging_more_paths_than_a_command_line_holds(tmp_path: Path) -> None:
    """Stage all in a big workspace: 10,000 paths of 200+ bytes (over 2 MB, more than
    Linux lets a command line carry) reach git on stdin, staged and unstaged at once."""
    import os

    from quarry.factory.git import WorkingCopyGit
    from tests.integration.factory.gitrepos import git

    git(tmp_path, "init", "-q", "-b", "main")
    folder = tmp_path / "data"
    folder.mkdir()
    paths = []
    for i in range(10_000):
        name = f"{i:05d}_" + "x" * 200 + ".csv"
        (folder / name).write_text(str(i))
        paths.append(f"data/{name}")
    assert sum(len(p) + 12 for p in paths) > os.sysconf("SC_ARG_MAX")
    wc = WorkingCopyGit(tmp_path, GitRunner())
    wc.stage(paths)
    assert len(git(tmp_path, "diff", "--cached", "--name-only").splitlines()) == 10_000
    wc.unstage(paths)
    assert git(tmp_path, "diff", "--cached", "--name-only") == ""
