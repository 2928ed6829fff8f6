"""The git service: the git command line, run in a subprocess with a timeout.

Why the CLI rather than pygit2 (see ``docs/factory.md``): it is the git users run, so
behaviour (merges, refs, config, hooks policy, the network protocols, SSH and
credential helpers) is exactly theirs; it needs no libgit2 build; and a subprocess can
be killed on a timeout, where a libgit2 network call blocks a thread until it is done.
The cost — a process per command, a few milliseconds — is small next to the network.

Every call is blocking: the API runs them on a worker thread, never on the event loop.
Every call sets ``GIT_TERMINAL_PROMPT=0`` (a prompt would hang), passes author and
committer explicitly (the host may have no git identity), disables repository hooks
(the Factory must not execute code a repository ships) and refuses the ``ext::``
transport. Origin credentials come from settings and reach git through an inline
credential helper that reads two environment variables of the child process: they
are never in argv (visible in ``ps``), never in ``.git/config``, and every message
that leaves this module is scrubbed of them.
"""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quarry.core.errors import BadRequest
from quarry.factory.gitrunner import (
    GitError,
    GitFailed,
    GitRunner,
    GitTimeout,
    Identity,
)
from quarry.factory.paths import check_relpath, confine

__all__ = ["GitError", "GitFailed", "GitRunner", "GitTimeout", "Identity", "WorkingCopyGit"]

log = logging.getLogger(__name__)

NEVER_COMMITTED = (":(exclude).quarry", ":(exclude,glob)**/*.quarry-tmp")
EXCLUDED_PATTERNS = ".quarry/\n*.quarry-tmp\n"
BRANCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


def check_branch_name(name: str) -> str:
    if not BRANCH_NAME.match(name) or ".." in name or name.endswith((".lock", "/", ".")):
        raise BadRequest(
            f"invalid branch name {name!r}: letters, digits, '.', '_', '-' and '/' only",
            parameter="branch",
        )
    if "//" in name or "/." in name or "@{" in name:
        raise BadRequest(f"invalid branch name {name!r}", parameter="branch")
    return name


@dataclass
class WorkingCopyGit:
    """Git operations on one working copy (whose origin, if any, is ``origin``)."""

    root: Path
    runner: GitRunner

    def _git(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.runner.run(self.root, args, **kwargs)

    def origin_url(self) -> str | None:
        done = self._git("remote", "get-url", "origin", check=False)
        return done.stdout.strip() or None if done.returncode == 0 else None

    def is_repository(self) -> bool:
        return (self.root / ".git").exists()

    def head(self) -> str | None:
        done = self._git("rev-parse", "--verify", "-q", "HEAD", check=False)
        return done.stdout.strip() or None if done.returncode == 0 else None

    def branch(self) -> str | None:
        done = self._git("symbolic-ref", "--short", "-q", "HEAD", check=False)
        return done.stdout.strip() or None if done.returncode == 0 else None

    # -- reading --------------------------------------------------------------------
    def status(self) -> list[dict[str, str]]:
        return self.snapshot()[2]

    def snapshot(self) -> tuple[str | None, str | None, list[dict[str, str]]]:
        """(branch, head commit, changed files) from one ``git status --porcelain=v2``.
        Status codes are the v1 letters (``' '`` unchanged, ``'?'`` untracked)."""
        out = self._git(
            "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"
        ).stdout
        items = out.split("\0")
        branch = head = None
        entries: list[dict[str, str]] = []
        i = 0
        while i < len(items):
            item = items[i]
            i += 1
            if item.startswith("# branch.oid "):
                head = None if item[13:] == "(initial)" else item[13:]
                continue
            if item.startswith("# branch.head "):
                branch = None if item[14:] == "(detached)" else item[14:]
                continue
            kind = item[:1]
            if kind == "?":
                entries.append({"index": "?", "worktree": "?", "path": item[2:]})
                continue
            fields = {"1": 8, "2": 9, "u": 10}.get(kind)
            if fields is None:
                continue  # headers, ignored files, the empty tail
            parts = item.split(" ", fields)
            xy = parts[1].replace(".", " ")
            entry = {"index": xy[0], "worktree": xy[1], "path": parts[fields]}
            if kind == "2":  # a rename or copy: the old path is the next item
                entry["from"] = items[i]
                i += 1
            entries.append(entry)
        return branch, head, entries

    def changes(self) -> dict[str, Any]:
        """The status as two lists, as the IDE shows it: ``staged`` (index against the
        last commit: what a commit records) and ``unstaged`` (working copy against the
        index, untracked files included). A file edited again after staging is in both.
        Each entry: ``path``, ``code`` (``M`` modified, ``A`` added, ``D`` deleted, ``R``
        renamed, ``?`` untracked, ``U`` conflicted) and ``from`` for a rename."""
        branch, head, files = self.snapshot()
        staged: list[dict[str, str]] = []
        unstaged: list[dict[str, str]] = []
        for entry in files:
            index, worktree = entry["index"], entry["worktree"]
            if index not in (" ", "?"):
                item = {"path": entry["path"], "code": index}
                if "from" in entry:
                    item["from"] = entry["from"]
                staged.append(item)
            if worktree != " ":
                unstaged.append({"path": entry["path"], "code": worktree})
        return {
            "branch": branch,
            "head": head,
            "clean": not files,
            "files": files,
            "staged": staged,
            "unstaged": unstaged,
        }

    def porcelain(self) -> str:
        return self._git("status", "--porcelain=v1", "--untracked-files=all").stdout

    def diff(self, path: str | None = None, *, staged: bool | None = None) -> str:
        """A unified diff. ``staged=None``: the working copy against the last commit
        (everything a commit of all changes would record); ``True``: the staged set
        (index against the last commit); ``False``: what is not staged yet (working
        copy against the index). Untracked files are shown as new unless ``staged``."""
        spec = ["--", ":(literal)" + path] if path else []
        if staged:
            return self._git("diff", "--cached", *self._head_arg(), *spec).stdout
        if staged is None:
            base = self.head() or self._empty_tree()
            text = self._git("diff", base, *spec).stdout
        else:
            text = self._git("diff", *spec).stdout
        untracked = self._git(
            "ls-files", "--others", "--exclude-standard", "-z", *spec
        ).stdout.split("\0")
        for rel in filter(None, untracked):
            done = self._git("diff", "--no-index", "--", "/dev/null", rel, check=False)
            text += done.stdout
        return text

    def _empty_tree(self) -> str:
        """The empty tree's id (what the first commit is compared with)."""
        return self._git("hash-object", "-t", "tree", "--stdin", input_text="").stdout.strip()

    def log(self, limit: int, ref: str | None = None) -> list[dict[str, str]]:
        if self.head() is None and ref is None:
            return []
        fmt = "%H%x1f%an%x1f%ae%x1f%aI%x1f%s%x1e"
        args = ["log", f"--max-count={limit}", f"--format={fmt}"]
        if ref:
            args += [check_branch_name(ref), "--"]
        out = self._git(*args).stdout
        commits = []
        for record in filter(None, (r.strip("\n") for r in out.split("\x1e"))):
            sha, name, email, date, subject = record.split("\x1f", 4)
            commits.append(
                {
                    "commit": sha,
                    "author_name": name,
                    "author_email": email,
                    "date": date,
                    "subject": subject,
                }
            )
        return commits

    def branches(self) -> list[dict[str, Any]]:
        out = self._git(
            "for-each-ref", "refs/heads", "--format=%(refname:short)%00%(objectname)"
        ).stdout
        current = self.branch()
        rows = []
        for line in filter(None, out.splitlines()):
            name, sha = line.split("\0", 1)
            rows.append({"name": name, "commit": sha, "current": name == current})
        return rows

    # -- changing -------------------------------------------------------------------
    def commit(
        self,
        message: str,
        identity: Identity,
        paths: list[str] | None = None,
        *,
        everything: bool = False,
    ) -> str:
        """Commit the staged set (the index), as ``git commit`` does.

        ``paths`` (the API before there was a stage route): stage those paths and commit
        only them (``git commit --only``), whatever else is staged stays staged.
        ``everything``: stage every change first (the old default, ``git add -A``).
        """
        if not message.strip():
            raise BadRequest("a commit needs a message", parameter="message")
        if paths and everything:
            raise BadRequest('name "paths" or send "all": true, not both', parameter="all")
        only: list[str] = []
        if everything:
            # never Quarry's own files: local mode's state folder, a crashed write's leftover
            added = self._git("add", "-A", "--", ".", *NEVER_COMMITTED, check=False)
            if added.returncode != 0:
                raise GitFailed(f"cannot stage the changes: {self._clean(added.stderr)}")
        elif paths:
            only = self._specs(paths)
            self._add(paths, only)
        against = self._head_arg()
        staged = self._git("diff", "--cached", "--quiet", *against, "--", *only, check=False)
        if staged.returncode == 0:
            if paths:
                raise GitError(f"nothing to commit: {', '.join(paths)} match the last commit")
            if everything or not self.snapshot()[2]:
                raise GitError("nothing to commit: the working copy matches the last commit")
            raise GitError(
                "nothing is staged to commit: stage the changes first "
                '(POST .../git/stage), or name them in "paths", or send "all": true'
            )
        extra = ["--only", "--", *only] if only else []
        self._git("commit", "-q", "--no-verify", "-m", message, *extra, identity=identity)
        head = self.head()
        assert head is not None
        return head

    def _head_arg(self) -> list[str]:
        return ["HEAD"] if self.head() is not None else []

    def stage(self, paths: list[str]) -> None:
        """Put the working copy's version of ``paths`` in the index (``git add -A``):
        new, changed and deleted files alike; a folder stages what changed under it.
        All or nothing: one path that matches nothing refuses the whole request."""
        self._add(paths, self._specs(paths))

    def _add(self, paths: list[str], specs: list[str]) -> None:
        done = self._git(
            "add", "-A", *self._from_stdin(), input_text=_nul(*specs, *NEVER_COMMITTED), check=False
        )
        if done.returncode != 0:
            raise self._path_refused("stage", paths, specs, done.stderr)

    def unstage(self, paths: list[str]) -> None:
        """Take ``paths`` out of the staged set: the index gets the last commit's
        version back (``git restore --staged``); the working copy is not touched, so
        nothing typed is lost. All or nothing, like :meth:`stage`."""
        specs = self._specs(paths)
        if self.head() is None:  # no commit yet: unstaging is forgetting the new files
            done = self._git(
                "rm",
                "--cached",
                "-r",
                "-q",
                *self._from_stdin(),
                input_text=_nul(*specs),
                check=False,
            )
        else:
            done = self._git(
                "restore", "--staged", *self._from_stdin(), input_text=_nul(*specs), check=False
            )
        if done.returncode != 0:
            raise self._path_refused("unstage", paths, specs, done.stderr)

    @staticmethod
    def _from_stdin() -> list[str]:
        """Pathspecs on stdin, NUL-separated: thousands of paths (Stage all in a big
        workspace) would not fit in a command line."""
        return ["--pathspec-from-file=-", "--pathspec-file-nul"]

    def _specs(self, paths: list[str]) -> list[str]:
        """Literal pathspecs of paths confined to the working copy (``..``, absolute
        paths, ``.git`` and symbolic links are a 400 naming the path): a ``*`` or a
        leading ``:`` in a name means that character, not a pattern or git magic."""
        if not paths:
            raise BadRequest("name at least one path", parameter="paths")
        specs = []
        for path in paths:
            rel = check_relpath(path)
            confine(self.root, rel)
            specs.append(":(literal)" + rel)
        return specs

    def _clean(self, stderr: str) -> str:
        return self.runner.scrub(stderr.replace(":(literal)", "").strip())

    def _path_refused(
        self, verb: str, paths: list[str], specs: list[str], stderr: str
    ) -> BadRequest:
        for path, spec in zip(paths, specs, strict=True):
            if f"'{spec}'" in stderr:
                what = "no file or change" if verb == "stage" else "nothing staged or tracked"
                return BadRequest(
                    f"cannot {verb} {path!r}: {what} at that path in the workspace; "
                    "nothing was changed",
                    parameter="paths",
                    path=path,
                )
        return BadRequest(
            f"cannot {verb} {', '.join(paths)}: {self._clean(stderr)}", parameter="paths"
        )

    def create_branch(self, name: str, start: str | None = None) -> None:
        check_branch_name(name)
        if any(b["name"] == name for b in self.branches()):
            raise GitError(f"branch {name!r} already exists", branch=name)
        self._git("branch", "--no-track", name, *([check_branch_name(start)] if start else []))

    def switch(self, name: str) -> None:
        check_branch_name(name)
        done = self._git("switch", "-q", name, check=False)
        if done.returncode != 0:
            raise GitError(
                f"cannot switch to {name!r}: {self.runner.scrub(done.stderr.strip())}",
                branch=name,
            )

    def delete_branch(self, name: str, *, force: bool, protected: set[str]) -> None:
        check_branch_name(name)
        if name == self.branch():
            raise GitError(f"{name!r} is the current branch; switch away first", branch=name)
        if name in protected:
            raise GitError(f"{name!r} is the workspace's default branch", branch=name)
        done = self._git("branch", "-D" if force else "-d", name, check=False)
        if done.returncode != 0:
            raise GitError(
                f"cannot delete {name!r}: {self.runner.scrub(done.stderr.strip())}", branch=name
            )

    def fetch(self) -> None:
        url = self.origin_url()
        if url is None:
            raise GitError("this working copy has no origin to pull from or push to")
        self._git("fetch", "-q", "--prune", "origin", url=url)

    def pull_ff(self) -> tuple[str | None, str | None]:
        """Fast-forward the current branch to the origin's; (before, after) commits.
        Anything else — diverged history, local edits in the way — is a ``GitError``
        and leaves HEAD, the index and every file as they were."""
        branch = self.branch()
        if branch is None:
            raise GitError("the working copy is not on a branch (detached HEAD)")
        self.fetch()
        remote = f"refs/remotes/origin/{branch}"
        if self._git("rev-parse", "--verify", "-q", remote, check=False).returncode != 0:
            raise GitError(f"the origin has no branch {branch!r}; push it first", branch=branch)
        before = self.head()
        if before is not None:
            behind = self._count(f"HEAD..{remote}")
            ahead = self._count(f"{remote}..HEAD")
            if behind == 0:
                return before, before
            if ahead > 0:
                raise GitError(
                    f"cannot fast-forward {branch!r}: it has {ahead} commit(s) the origin does "
                    f"not have and the origin has {behind} it does not; nothing was changed",
                    branch=branch,
                    ahead=ahead,
                    behind=behind,
                )
        done = self._git("merge", "--ff-only", "-q", remote, check=False)
        if done.returncode != 0:
            raise GitError(
                f"cannot fast-forward {branch!r}: {self.runner.scrub(done.stderr.strip())}; "
                "nothing was changed",
                branch=branch,
            )
        return before, self.head()

    def _count(self, spec: str) -> int:
        return int(self._git("rev-list", "--count", spec).stdout.strip() or 0)

    def push(self) -> str:
        branch = self.branch()
        if branch is None:
            raise GitError("the working copy is not on a branch (detached HEAD)")
        url = self.origin_url()
        if url is None:
            raise GitError("this working copy has no origin to push to")
        ref = f"refs/heads/{branch}:refs/heads/{branch}"
        done = self._git("push", "--porcelain", "origin", ref, url=url, check=False)
        if done.returncode != 0:
            text = self.runner.scrub((done.stdout + "\n" + done.stderr).strip())
            if "[rejected]" in text or "rejected" in text or "fetch first" in text:
                raise GitError(
                    f"push of {branch!r} rejected: the origin has commits this branch does not; "
                    "pull, then push again",
                    branch=branch,
                )
            raise GitFailed(f"push of {branch!r} failed: {text}", branch=branch)
        self._git("branch", f"--set-upstream-to=origin/{branch}", branch, check=False)
        head = self.head()
        assert head is not None
        return head


def _nul(*specs: str) -> str:
    return "".join(spec + "\0" for spec in specs)


def clone(runner: GitRunner, url: str, dest: Path, branch: str | None = None) -> None:
    """Clone ``url`` into ``dest``; Quarry's own files are excluded from its status."""
    args = ["clone", "-q", "--no-tags"]
    if branch:
        args += ["--branch", check_branch_name(branch)]
    runner.run(None, [*args, "--", url, str(dest)], url=url)
    exclude = dest / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a", encoding="utf-8") as fh:
        fh.write("\n# Quarry's own files\n" + EXCLUDED_PATTERNS)


def head_branch(root: Path) -> str | None:
    """The checked-out branch read from ``.git/HEAD`` without running git (a compile
    status key for a change about to be compiled): ``''`` outside git, ``(detached)``,
    or ``None`` when only git can tell (a linked worktree's ``.git`` file)."""
    dot_git = root / ".git"
    if not dot_git.exists():
        return ""
    try:
        text = (dot_git / "HEAD").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if text.startswith("ref: refs/heads/"):
        return text[len("ref: refs/heads/") :]
    return "(detached)" if text else None
