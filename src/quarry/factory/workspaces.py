"""Workspaces and their origins; where each working copy lives on the Factory.

Local mode: a workspace is a folder on this machine (``source_kind = 'path'``) and
that folder is the truth. Cloud mode: a workspace has an origin URL
(``source_kind = 'git'``, the URL in ``source``); the Factory clones it into
``<workspaces_dir>/<tenant>/<workspace>``. That folder is only a cache: when it is
missing (a new disk, a wiped volume) it is cloned again, at start or on first use,
and since revision ids are derived from content, the same commit compiles to the
same revision.

A clone is made in a temporary sibling folder and renamed into place, so a half-done
clone (a crash, a timeout) is never mistaken for a working copy.
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from quarry.core.errors import BadRequest
from quarry.factory import git
from quarry.store import factory_tables as ft
from quarry.store.db import Engine
from quarry.store.workspaces import WorkspaceRow, get_workspace, register_workspace

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")
REMOTE_SCHEMES = ("https://", "http://", "ssh://", "git://")


def check_name(value: str, what: str = "workspace") -> str:
    if not NAME.match(value):
        raise BadRequest(
            f"invalid {what} name {value!r}: 1-100 letters, digits, '_', '.', '-', "
            "starting with a letter or digit",
            parameter="name" if what == "workspace" else what,
        )
    return value


def check_origin(url: str, *, allow_local: bool) -> str:
    """A URL git may clone: remote schemes always; ``file://`` and absolute paths only
    when the caller allows local origins (the operator's CLI, tests)."""
    url = url.strip()
    if not url or url.startswith("-") or any(ord(c) < 32 for c in url):
        raise BadRequest(f"invalid origin URL {url!r}", parameter="origin")
    if "://" in url and urlsplit(url).password is not None:
        raise BadRequest(
            "the origin URL carries a password; give credentials in QUARRY_GIT_CREDENTIALS "
            "(per host), never in the URL (it would be stored and shown)",
            parameter="origin",
        )
    if url.startswith(REMOTE_SCHEMES) or _SCP_LIKE.match(url):
        return url
    if url.startswith("file://") or url.startswith("/"):
        if allow_local:
            return url
        raise BadRequest(
            "local origins (file:// or a path) are disabled on this Factory "
            "(QUARRY_GIT_ALLOW_LOCAL_ORIGINS)",
            parameter="origin",
        )
    raise BadRequest(
        f"unsupported origin {url!r}: use https://, ssh://, git:// or user@host:path",
        parameter="origin",
    )


def register_origin(
    engine: Engine, tenant_id: str, name: str, url: str, *, branch: str | None, allow_local: bool
) -> WorkspaceRow:
    check_name(tenant_id, "tenant")
    check_name(name)
    url = check_origin(url, allow_local=allow_local)
    if branch is not None:
        git.check_branch_name(branch)
    row = register_workspace(engine, tenant_id=tenant_id, name=name, source_kind="git", source=url)
    if branch is not None and row.default_branch != branch:
        with engine.begin() as conn:
            ft.set_default_branch(conn, row.id, branch)
            row = get_workspace(conn, tenant_id, name)
    return row


def register_path(engine: Engine, tenant_id: str, name: str, path: Path) -> WorkspaceRow:
    check_name(name)
    root = path.resolve()
    if not root.is_dir():
        raise BadRequest(f"workspace folder {str(path)!r} not found", parameter="path")
    return register_workspace(
        engine, tenant_id=tenant_id, name=name, source_kind="path", source=str(root)
    )


def unregister(engine: Engine, workspace: WorkspaceRow, workspaces_dir: Path | None) -> None:
    """Forget a workspace (its revisions and runs go with it); a clone is deleted, a
    local folder never is."""
    with engine.begin() as conn:
        ft.delete_workspace(conn, workspace.id)
    if workspace.source_kind == "git" and workspaces_dir is not None:
        shutil.rmtree(clone_path(workspaces_dir, workspace), ignore_errors=True)


def clone_path(workspaces_dir: Path, workspace: WorkspaceRow) -> Path:
    return clone_dir(workspaces_dir, workspace.tenant_id, workspace.name)


def clone_dir(workspaces_dir: Path, tenant_id: str, name: str) -> Path:
    check_name(tenant_id, "tenant")
    check_name(name)
    return workspaces_dir.resolve() / tenant_id / name


def has_working_copy(workspaces_dir: Path, tenant_id: str, name: str) -> bool:
    """Whether the clone of a cloud workspace is on this disk: one ``stat``, which is
    all the Factory's start-up pass spends on a workspace that needs nothing (the
    folder is not resolved: ``resolve`` per workspace tripled the cost at 10,000)."""
    check_name(tenant_id, "tenant")
    check_name(name)
    return (workspaces_dir / tenant_id / name / ".git").is_dir()


def ensure_clone(
    engine: Engine, runner: git.GitRunner, workspaces_dir: Path, workspace: WorkspaceRow
) -> tuple[Path, bool]:
    """The working copy of a cloud workspace, cloned if missing; (path, cloned now).
    Records the origin's default branch the first time."""
    dest = clone_path(workspaces_dir, workspace)
    if (dest / ".git").is_dir():
        return dest, False
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # a leftover without .git is not a working copy
        shutil.rmtree(dest)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.cloning")
    try:
        git.clone(runner, workspace.source, tmp, workspace.default_branch)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("cloned workspace %s/%s into %s", workspace.tenant_id, workspace.name, dest)
    if workspace.default_branch is None:
        branch = git.WorkingCopyGit(dest, runner).branch()
        if branch is not None:
            with engine.begin() as conn:
                ft.set_default_branch(conn, workspace.id, branch)
    return dest, True
