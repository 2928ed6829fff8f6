"""Path confinement: every path the IDE API names stays inside its working copy.

A request path is checked as text first (so nothing on disk is touched for an
obviously bad one), then component by component against the disk: a component that
is a symbolic link is refused outright — whether it points inside or outside — since
a link's target can change after the check, and the compiler ignores links anyway.
``.git`` (git's own state, including hooks that git executes) and ``.quarry`` (local
mode's state folder) are never reachable, in any letter case.

Every refusal is a ``BadRequest`` (400) naming the path and the reason, raised before
anything is changed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from quarry.core.errors import BadRequest

MAX_PATH_BYTES = 1000  # revision_files.path is String(1000)
MAX_NAME_BYTES = 255  # NAME_MAX on Linux and macOS
FORBIDDEN_DIRS = frozenset({".git", ".quarry"})


def _refuse(path: str, reason: str) -> BadRequest:
    shown = path if len(path) <= 200 else path[:200] + "..."
    return BadRequest(f"path {shown!r} refused: {reason}", parameter="path", path=shown)


def check_relpath(path: str) -> str:
    """The path as a normalised workspace-relative POSIX path, or ``BadRequest``.

    Refused: empty, NUL or other control characters, backslashes, absolute paths,
    ``.``/``..``/empty components, ``.git``/``.quarry`` anywhere, over-long names.
    """
    if not path:
        raise _refuse(path, "the path is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise _refuse(path.replace("\x00", "\\0"), "it contains a NUL or control character")
    if "\\" in path:
        raise _refuse(path, "backslashes are not allowed; use '/'")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise _refuse(path, "absolute paths are not allowed; paths are relative to the workspace")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise _refuse(path, f"longer than {MAX_PATH_BYTES} bytes")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise _refuse(path, "empty, '.' and '..' components are not allowed")
        if part.lower() in FORBIDDEN_DIRS:
            raise _refuse(path, f"{part!r} is not part of the workspace")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise _refuse(path, f"a name is longer than {MAX_NAME_BYTES} bytes")
    return "/".join(parts)


def confine(root: Path, path: str) -> Path:
    """The absolute path of ``path`` inside ``root``; no component may be a symlink.

    Components that do not exist yet are fine (a write creates them).
    """
    rel = check_relpath(path)
    base = root.resolve()
    current = base
    for part in rel.split("/"):
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            break
        except NotADirectoryError as exc:
            raise _refuse(path, "a parent of this path is a file") from exc
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(path, "it goes through a symbolic link")
    target = base / rel
    if not target.resolve().is_relative_to(base):  # belt and braces after the walk
        raise _refuse(path, "it leaves the workspace")
    return target


def is_under(rel: str, folders: tuple[str, ...]) -> bool:
    """Whether a relative path lies in one of ``folders`` (relative, no trailing '/')."""
    return any(f == "." or rel == f or rel.startswith(f.rstrip("/") + "/") for f in folders if f)
