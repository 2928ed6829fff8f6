"""The file API's service: list, read, write, move and delete files of a working copy.

Lost updates are refused with an expected content hash (sha256 of the bytes, the
compiler's ``source_hash``): a writer states the hash of the version it edited (or
``None`` for "this file must not exist yet"); if the file on disk is another version,
the write is a 409 and nothing changes. The check and the rename happen under the
working copy's lock, and the Factory is the only writer of its working copies, so of
two writers holding the same hash exactly one wins.

Writes are atomic: the bytes go to a temporary file in the target's own folder, are
fsynced, and replace the target with one ``rename``; the folder is fsynced after.
A reader sees the old file or the new one, never a torn one, and a crash leaves at
worst a stray ``.*.quarry-tmp`` file, which the compiler does not read.

Only UTF-8 text is accepted, except under a dataset folder named in ``config.yml``
(data files such as Parquet are binary by nature).
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quarry.core.errors import BadRequest, Conflict, NotFound
from quarry.core.hashing import sha256_hex
from quarry.factory.paths import FORBIDDEN_DIRS, confine, is_under

TMP_SUFFIX = ".quarry-tmp"
CONFIG_FILES = ("config.yml", "config.yaml")


@dataclass(frozen=True)
class Limits:
    text_bytes: int
    dataset_bytes: int


@dataclass(frozen=True)
class FileEntry:
    path: str
    type: str  # "file" | "dir" | "symlink"
    size: int | None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "type": self.type, "size": self.size}


def content_hash(data: bytes) -> str:
    return sha256_hex(data)


def dataset_folders(root: Path) -> tuple[str, ...]:
    """The dataset folders ``config.yml`` names; none when it does not parse (then
    only text can be written, which is the safe side)."""
    from quarry.core.errors import CompileFailed
    from quarry.definitions.parse import dataset_dirs, parse_definition

    for name in CONFIG_FILES:
        candidate = root / name
        if candidate.is_file() and not candidate.is_symlink():
            try:
                config = parse_definition(name, candidate.read_bytes())
                return tuple(dataset_dirs(config.model))  # type: ignore[arg-type]
            except (CompileFailed, OSError, ValueError):
                return ()
    return ()


def list_tree(root: Path, under: str | None = None) -> list[FileEntry]:
    """Every file and folder (``.git`` and ``.quarry`` excluded), sorted by path.
    Symbolic links are listed as such and never followed."""
    base = root.resolve()
    start = confine(base, under) if under else base
    if not start.is_dir():
        raise NotFound(f"folder {under!r} not found in the workspace", path=under)
    out: list[FileEntry] = []

    def walk(folder: Path, rel: str) -> None:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            path = f"{rel}{entry.name}"
            if entry.is_symlink():
                out.append(FileEntry(path, "symlink", None))
            elif entry.is_dir(follow_symlinks=False):
                if entry.name.lower() in FORBIDDEN_DIRS:
                    continue
                out.append(FileEntry(path, "dir", None))
                walk(Path(entry.path), f"{path}/")
            elif entry.is_file(follow_symlinks=False):
                if entry.name.endswith(TMP_SUFFIX):
                    continue
                out.append(FileEntry(path, "file", entry.stat(follow_symlinks=False).st_size))

    walk(start, f"{start.relative_to(base).as_posix()}/" if start != base else "")
    return out


def _current(target: Path, path: str) -> bytes | None:
    """The bytes of the file now, or ``None`` if there is none."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest(f"{path!r} is not a regular file", parameter="path", path=path)
    return target.read_bytes()


def read_file(root: Path, path: str) -> tuple[bytes, str]:
    target = confine(root, path)
    data = _current(target, path)
    if data is None:
        raise NotFound(f"file {path!r} not found in the workspace", path=path)
    return data, content_hash(data)


def check_content(root: Path, path: str, data: bytes, limits: Limits) -> None:
    """Size and kind limits, checked before anything is written."""
    binary_ok = is_under(path, dataset_folders(root))
    limit = limits.dataset_bytes if binary_ok else limits.text_bytes
    if len(data) > limit:
        raise BadRequest(
            f"{path!r} is {len(data)} bytes; the limit for this file is {limit} bytes",
            parameter="content",
            path=path,
            limit=limit,
        )
    if binary_ok:
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"{path!r} is not UTF-8 text (byte {exc.start}); binary files are only allowed "
            "under a dataset folder named in config.yml",
            parameter="content",
            path=path,
        ) from None
    if b"\x00" in data:
        raise BadRequest(
            f"{path!r} contains NUL bytes; binary files are only allowed under a dataset folder",
            parameter="content",
            path=path,
        )


def _expect(path: str, current: bytes | None, expected: str | None) -> None:
    actual = None if current is None else content_hash(current)
    if actual == expected:
        return
    if expected is None:
        message = f"{path!r} already exists; send its expected_hash to overwrite it"
    elif actual is None:
        message = f"{path!r} no longer exists (it was deleted or moved since you read it)"
    else:
        message = f"{path!r} changed since you read it; reload it and apply your edit again"
    raise Conflict(message, path=path, expected_hash=expected, actual_hash=actual)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_parents(root: Path, target: Path) -> None:
    base = root.resolve()
    folder = base
    for part in target.relative_to(base).parts[:-1]:
        folder = folder / part
        try:
            os.mkdir(folder)
        except FileExistsError:
            if not folder.is_dir() or folder.is_symlink():
                raise BadRequest(
                    f"{folder.relative_to(base).as_posix()!r} exists and is not a folder",
                    parameter="path",
                ) from None


def atomic_write(target: Path, data: bytes) -> None:
    """Temporary file in the same folder, fsync, rename over the target, fsync folder."""
    tmp = target.with_name(f".{target.name[:200]}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def write_file(
    root: Path, path: str, data: bytes, expected_hash: str | None, limits: Limits
) -> str:
    """Write ``data`` if the file is still at ``expected_hash``; returns the new hash.
    The caller holds the working copy's lock."""
    target = confine(root, path)
    check_content(root, path, data, limits)
    _expect(path, _current(target, path), expected_hash)
    _make_parents(root, target)
    confine(root, path)  # the folders just made are real folders, not links
    atomic_write(target, data)
    return content_hash(data)


def delete_file(root: Path, path: str, expected_hash: str | None) -> None:
    target = confine(root, path)
    current = _current(target, path)
    if current is None:
        raise NotFound(f"file {path!r} not found in the workspace", path=path)
    if expected_hash is not None:
        _expect(path, current, expected_hash)
    os.unlink(target)
    _fsync_dir(target.parent)


def move_file(root: Path, source: str, dest: str, expected_hash: str | None) -> str:
    """Rename a file; the destination must not exist. Returns the file's hash."""
    src = confine(root, source)
    dst = confine(root, dest)
    current = _current(src, source)
    if current is None:
        raise NotFound(f"file {source!r} not found in the workspace", path=source)
    if expected_hash is not None:
        _expect(source, current, expected_hash)
    if os.path.lexists(dst):
        raise Conflict(f"{dest!r} already exists; delete it first", path=dest)
    check_content(root, dest, current, Limits(1 << 62, 1 << 62))
    _make_parents(root, dst)
    confine(root, dest)
    os.rename(src, dst)
    _fsync_dir(dst.parent)
    if dst.parent != src.parent:
        _fsync_dir(src.parent)
    return content_hash(current)
