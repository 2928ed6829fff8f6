"""A run's private folder: the only files its DuckDB databases may touch.

DuckDB's sandbox (``enable_external_access=false`` + ``allowed_directories``) limits
*which* paths SQL may open, not *how*: a ``COPY ... TO`` or an ``ATTACH`` into an
allowed folder still writes there. The revision's dataset folder in the blob cache
is made of hard links to content-addressed blobs shared by every revision and
tenant on the worker, so allowing it would let one workspace rewrite another's
data. Each run therefore reads a private snapshot instead:

- the snapshot's files are hard links to the read-only blobs inside folders made
  read-only too, so a process without ``CAP_DAC_OVERRIDE`` can neither change a
  file nor add one; where the process could write them anyway (it runs as root),
  the snapshot is made of private copies, so a write only touches this run's copy;
- DuckDB spills to a temp folder of its own, outside what SQL may name;
- everything is removed when the run's connections close; folders left by a process
  that died mid-run are removed by the next process that opens a sandbox there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
import uuid
from pathlib import Path

_READ_ONLY_DIR = stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP
_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_swept: set[Path] = set()
_swept_lock = threading.Lock()


class RunSandbox:
    """Created lazily under ``<cache>/runs/``; :meth:`close` removes it."""

    def __init__(self, parent: Path) -> None:
        self.parent = Path(parent)
        self._root: Path | None = None
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        with self._lock:
            if self._root is None:
                self.parent.mkdir(parents=True, exist_ok=True)
                _sweep_once(self.parent)
                root = self.parent / f"{os.getpid()}-{uuid.uuid4().hex}"
                root.mkdir(mode=0o700)
                self._root = root
            return self._root

    def temp_dir(self, database: str) -> Path:
        """DuckDB's spill folder for one database; SQL is not allowed to name it."""
        path = self.root / "tmp" / uuid.uuid4().hex
        path.mkdir(parents=True, mode=0o700)
        return path

    def snapshot(self, source: Path) -> Path:
        """A read-only private view of ``source`` (a revision's dataset folder)."""
        target = self.root / "data" / uuid.uuid4().hex
        target.mkdir(parents=True)
        copy = False
        for path in sorted(source.rglob("*")):
            dest = target / path.relative_to(source)
            if path.is_dir():
                dest.mkdir(exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not copy:
                with contextlib.suppress(OSError):
                    os.link(path, dest)
                    copy = _writable_anyway(dest)
                    if copy:
                        dest.unlink()
            if copy or not dest.exists():
                shutil.copyfile(path, dest)
                os.chmod(dest, _READ_ONLY_FILE)
        _seal(target)
        return target

    def close(self) -> None:
        with self._lock:
            root, self._root = self._root, None
        if root is not None:
            _remove(root)


def _remove(root: Path) -> None:
    """Remove a run folder, whose snapshot folders are read-only."""
    for folder, dirs, _files in os.walk(root):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(Path(folder) / name, 0o700)
    shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_once(parent: Path) -> None:
    """Remove run folders of processes that no longer exist (killed mid-run); once per
    folder and process, so a live process's runs are never touched."""
    with _swept_lock:
        if parent in _swept:
            return
        _swept.add(parent)
    for entry in parent.iterdir():
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            _remove(entry)


def _writable_anyway(path: Path) -> bool:
    """True when this process may write a read-only file (root, CAP_DAC_OVERRIDE)."""
    if os.access in os.supports_effective_ids:
        return os.access(path, os.W_OK, effective_ids=True)
    return os.access(path, os.W_OK)


def _seal(folder: Path) -> None:
    """Folders read-only bottom-up, so no file can be added, renamed or removed."""
    for current, dirs, _files in os.walk(folder, topdown=False):
        for name in dirs:
            os.chmod(Path(current) / name, _READ_ONLY_DIR)
    os.chmod(folder, _READ_ONLY_DIR)
