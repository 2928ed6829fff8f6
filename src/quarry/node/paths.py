"""The one place that decides a process's local folders.

Before this module the cache folder was computed wherever it was needed (the run
worker, the scheduling node, the semantic service, ``quarry run``, the Factory), with
two different fallbacks. Every process now gets its :class:`StatePaths` here, once, and
lower layers read ``svc.paths``.
"""

from __future__ import annotations

from pathlib import Path

from quarry.core.settings import Settings
from quarry.runtime.services import StatePaths

DEFAULT_DATA_DIR = Path(".quarry")


def state_paths(settings: Settings) -> StatePaths:
    """``data_dir`` (default ``./.quarry``; the CLI's ``with_local_defaults`` puts it in
    the workspace folder), its ``cache`` folder, and ``QUARRY_WORKSPACES_DIR`` or
    ``data_dir/workspaces`` for the Factory's working copies. Resolved to absolute
    paths, so a later change of directory does not move them."""
    data_dir = (settings.data_dir or DEFAULT_DATA_DIR).resolve()
    workspaces = settings.workspaces_dir or data_dir / "workspaces"
    return StatePaths(data_dir=data_dir, cache_dir=data_dir / "cache", workspaces_dir=workspaces)
