"""Local mode: a folder on this machine is the workspace (and its own truth)."""

from __future__ import annotations

import re
from pathlib import Path

from quarry.core.settings import Settings
from quarry.factory.compiler import CompileResult, compile_workspace
from quarry.factory.isolation import CompileLimits
from quarry.factory.statcache import cache_path, remember_root
from quarry.runtime.services import Services
from quarry.store.db import Engine
from quarry.store.objects import ObjectStore
from quarry.store.workspaces import WorkspaceRow, list_workspaces, register_workspace

# Written into a data folder that lies inside the workspace: git then ignores the
# whole folder (state database, blobs, caches) without touching the user's files.
STATE_GITIGNORE = "# Quarry's local state: never committed.\n*\n"


def workspace_name_for(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().name).strip("-.")
    return name or "workspace"


def register_local(engine: Engine, tenant_id: str, path: Path, name: str | None) -> WorkspaceRow:
    """Register the folder; without ``name`` a folder registered already (``quarry demo``
    registers its folder as ``demo``) keeps its registration instead of gaining a
    second workspace named after the folder."""
    if name is None:
        source = str(path.resolve())
        with engine.connect() as conn:
            same = [
                w
                for w in list_workspaces(conn, tenant_id)
                if w.source_kind == "path" and w.source == source
            ]
        if same:
            default = workspace_name_for(path)
            return next((w for w in same if w.name == default), same[0])
    return register_workspace(
        engine,
        tenant_id=tenant_id,
        name=name or workspace_name_for(path),
        source_kind="path",
        source=str(path.resolve()),
    )


def compile_local(
    engine: Engine,
    store: ObjectStore,
    tenant_id: str,
    path: Path,
    name: str | None = None,
    *,
    data_dir: Path | None = None,
    strict: bool = False,
    limits: CompileLimits | None = None,
) -> CompileResult:
    """Compile the folder; its stat cache lives under ``data_dir`` (by default the
    folder's own ``.quarry/``, local mode's default data folder, which is never scanned).
    ``limits``: :class:`~quarry.factory.isolation.CompileLimits` (default: the defaults)."""
    workspace = register_local(engine, tenant_id, path, name)
    state = (data_dir or path.resolve() / ".quarry").resolve()
    ignore_local_state(path, state)
    cache = cache_path(state, workspace.id)
    remember_root(state, path, workspace.id)
    return compile_workspace(
        engine, store, workspace, path, stat_cache=cache, strict=strict, limits=limits
    )


def compile_folder(
    svc: Services, settings: Settings, path: Path, name: str | None = None, *, strict: bool = False
) -> CompileResult:
    """:func:`compile_local` as every CLI command calls it: the process's services, its
    tenant, its data folder and the compile limits of its settings."""
    return compile_local(
        svc.engine,
        svc.store,
        settings.tenant,
        path,
        name,
        data_dir=svc.paths.data_dir,
        strict=strict,
        limits=CompileLimits.from_settings(settings),
    )


def ignore_local_state(workspace: Path, data_dir: Path) -> None:
    """Put a ``.gitignore`` of ``*`` in ``data_dir`` when it lies inside the workspace
    (local mode's default ``.quarry/``), so ``git add .`` never commits local state."""
    if not data_dir.is_relative_to(workspace.resolve()):
        return
    marker = data_dir / ".gitignore"
    if marker.exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(STATE_GITIGNORE)
