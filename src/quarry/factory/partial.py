"""Run one definition while other files of the workspace are broken.

``quarry run FILE`` and the Factory's draft runs should not be blocked by a mistake
in an unrelated file. When
the full compile fails, the files the target needs are worked out (the target,
every file its references name, transitively, and config.yml); if none of them has
an error, a revision of the workspace *without the broken files* is stored — but
never promoted, so the serve fleet still only sees fully valid revisions — and the
run uses that revision. The other files' problems are shown as warnings.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from quarry.core.errors import WARNING, CompileFailed, Problem
from quarry.definitions.kinds import Kind, classify_path
from quarry.definitions.parse import parse_definition
from quarry.definitions.references import RefKind
from quarry.factory.compiler import CompileResult, compile_workspace
from quarry.factory.isolation import CompileLimits
from quarry.factory.scan import SKIPPED_DIRS
from quarry.store.db import Engine
from quarry.store.objects import ObjectStore
from quarry.store.workspaces import WorkspaceRow

CONFIG = "config.yml"
_PATH_REFS = {RefKind.FILE, RefKind.WORKFLOW, RefKind.AGENT, RefKind.APP}


@dataclass
class PartialCompile:
    """A stored (not promoted) revision that holds ``target`` and what it needs."""

    result: CompileResult
    elsewhere: list[Problem]  # the problems of the files left out, as warnings


def needed_files(root: Path, target: str) -> set[str]:
    """``target`` and every definition or file its references name, transitively,
    plus config.yml. A file that cannot be parsed is included (and stops the walk
    there): its own problems then decide."""
    needed = {target, CONFIG}
    pending = [target]
    while pending:
        path = pending.pop()
        if classify_path(path) is None or not (root / path).is_file():
            continue
        try:
            parsed = parse_definition(path, (root / path).read_bytes())
        except CompileFailed:
            continue
        for ref in parsed.refs:
            if ref.kind in _PATH_REFS and ref.target not in needed:
                needed.add(ref.target)
                pending.append(ref.target)
    return needed


def draft_target(root: Path, kind: str, name: str) -> str | None:
    """The file a draft run of ``kind`` names: ``name`` itself when it is such a file,
    else the one file ``name`` + a suffix of that kind (a workflow known by its stem,
    ``workflows/sales``); None when there is none or several."""
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        return None  # only a plain path inside the workspace names a draft target
    wanted = Kind.APP if kind == "app" else Kind.WORKFLOW
    if classify_path(name) is wanted and (root / name).is_file():
        return name
    stems = ("app",) if wanted is Kind.APP else ("workflow", "procedure", "automation")
    found = [
        candidate
        for stem in stems
        for ext in (".yml", ".yaml")
        if (root / (candidate := f"{name}.{stem}{ext}")).is_file()
    ]
    return found[0] if len(found) == 1 else None


def compile_for_run(
    engine: Engine,
    store: ObjectStore,
    workspace: WorkspaceRow,
    root: Path,
    target: str,
    failed: CompileFailed,
    *,
    limits: CompileLimits | None = None,
) -> PartialCompile:
    """The revision to run ``target`` (workspace-relative) at, given the full
    compile's failure; re-raises ``failed`` when the target or what it needs is broken.
    ``limits`` as for the full compile (the Factory's hostile-input limits)."""
    broken = {p.path for p in failed.problems if p.severity != WARNING}
    if broken & needed_files(root, target):
        raise failed
    with tempfile.TemporaryDirectory(prefix="quarry-partial-") as scratch:
        copy = Path(scratch) / "workspace"
        shutil.copytree(
            root,
            copy,
            symlinks=True,
            ignore=lambda folder, names: _left_out(root, Path(folder), names, broken),
        )
        result = compile_workspace(engine, store, workspace, copy, promote=False, limits=limits)
    elsewhere = [Problem(p.path, p.line, p.column, p.message, WARNING) for p in failed.problems]
    return PartialCompile(result=result, elsewhere=elsewhere)


def _left_out(root: Path, folder: Path, names: list[str], broken: set[str]) -> set[str]:
    """The names in ``folder`` not to copy: never-read folders and broken files."""
    rel = folder.relative_to(root).as_posix()
    prefix = "" if rel == "." else f"{rel}/"
    return {name for name in names if name in SKIPPED_DIRS or f"{prefix}{name}" in broken}
