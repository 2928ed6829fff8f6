"""Dataset files on a worker: a content-addressed blob cache and per-revision folders.

``<root>/blobs/<sha256>`` holds each file content once, however many revisions or
workspaces use it; a blob is fetched from the object store the first time a run
needs it, checked against its hash, and written atomically (temp file + rename), so
a crash or a concurrent fetch never leaves a partial file under the final name.

``<root>/datasets/<revision>/<folder>/<name>`` then recreates a dataset folder of a
revision from hard links to those blobs (a copy where links are impossible), so
DuckDB finds ``'orders.csv'`` by name. A revision never changes, so a folder once
complete is reused by every later run; it too is built under a temporary name and
renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from quarry.core.errors import QuarryError
from quarry.core.hashing import sha256_hex
from quarry.store.objects import ObjectStore, blob_key
from quarry.store.revisions import FileRow

_FETCH_THREADS = 8


class CorruptBlob(QuarryError):
    code = "corrupt_blob"


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.datasets = self.root / "datasets"
        self.fetches = 0
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _lock_for(self, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest

    def ensure_blob(self, store: ObjectStore, tenant_id: str, digest: str) -> Path:
        """The local path of a blob, fetching it only if this machine lacks it."""
        path = self.blob_path(digest)
        if path.exists():
            return path
        with self._lock_for(digest):
            if path.exists():
                return path
            data = store.get(blob_key(tenant_id, digest))
            with self._lock:
                self.fetches += 1
            if sha256_hex(data) != digest:
                raise CorruptBlob(f"blob {digest} from {store.url} does not match its hash")
            _write_atomically(path, data)
        return path

    def dataset_folder(
        self,
        store: ObjectStore,
        tenant_id: str,
        revision_id: str,
        folder: str,
        files: list[FileRow],
    ) -> Path:
        """The local copy of ``folder`` (workspace-relative) as of ``revision_id``."""
        target = self.datasets / revision_id / folder
        if target.is_dir():
            return target
        with self._lock_for(f"{revision_id}/{folder}"):
            if target.is_dir():
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
            try:
                prefix = folder.rstrip("/") + "/"
                wanted = sorted({row.blob_hash for row in files})
                with ThreadPoolExecutor(max_workers=_FETCH_THREADS) as pool:
                    # Missing blobs download side by side; present ones cost a stat.
                    blobs = dict(
                        zip(
                            wanted,
                            pool.map(lambda h: self.ensure_blob(store, tenant_id, h), wanted),
                            strict=True,
                        )
                    )
                for row in files:
                    blob = blobs[row.blob_hash]
                    dest = staging / row.path[len(prefix) :]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    _link_or_copy(blob, dest)
                try:
                    staging.rename(target)
                except OSError:
                    # Another process finished the same folder first: identical content.
                    if not target.is_dir():
                        raise
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
        return target


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # Cached blobs are shared by hard links: nobody may change them in place.
        os.chmod(tmp, 0o444)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _link_or_copy(blob: Path, dest: Path) -> None:
    try:
        os.link(blob, dest)
    except OSError:
        shutil.copyfile(blob, dest)
