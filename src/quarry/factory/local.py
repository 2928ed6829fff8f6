"""Local mode: a folder on this machine is the workspace (and its own truth)."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine

from quarry.factory.compiler import CompileResult, compile_workspace
from quarry.factory.isolation import CompileLimits
from quarry.factory.statcache import cache_path
from quarry.store.objects import ObjectStore
from quarry.store.workspaces import WorkspaceRow, register_workspace


def workspace_name_for(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().name).strip("-.")
    return name or "workspace"


def register_local(engine: Engine, tenant_id: str, path: Path, name: str | None) -> WorkspaceRow:
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
    cache = cache_path(data_dir or path.resolve() / ".quarry", workspace.id)
    return compile_workspace(
        engine, store, workspace, path, stat_cache=cache, strict=strict, limits=limits
    )
