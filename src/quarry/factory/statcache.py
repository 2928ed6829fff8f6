"""A stat cache, like git's index: (size, mtime_ns, inode, ctime_ns) -> sha256 per path.

A recompile hashes only the files whose stat changed since the last compile. As in
git, a file rewritten with the same size and the same mtime, ctime and inode is not
noticed (``os.utime`` back to the old time *and* a kept ctime is needed for that, which
a normal edit cannot produce). The "racy" case is handled as git does: an entry whose
mtime or ctime lies within ``RACY_NS`` of when the cache was written may have changed
within the same timestamp tick after it was hashed, so it is not trusted and the file
is hashed again.

The cache also remembers, for the last revision it saw validated, a fingerprint of
the workspace's paths and names: while that is unchanged, references of unchanged
files need not be checked again.

The file is written atomically (a temporary file, then ``os.replace``); a missing,
unreadable or foreign cache is simply empty. Saving is best effort.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RACY_NS = 2_000_000_000
VERSION = 1

# (size, mtime_ns, inode, ctime_ns)
StatKey = tuple[int, int, int, int]


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def cache_path(data_dir: Path, workspace_id: str) -> Path:
    return data_dir / "statcache" / f"{workspace_id}.json"


@dataclass
class StatCache:
    root: str
    # path -> [size, mtime_ns, inode, ctime_ns, sha256], as stored (not converted on load)
    entries: dict[str, list[Any]] = field(default_factory=dict)
    written_ns: int = 0
    checked_revision: str | None = None
    checked_fingerprint: str | None = None
    # what this run saw, saved by ``save``
    seen: dict[str, list[Any]] = field(default_factory=dict)
    dirty: bool = False

    def lookup(self, path: str, key: StatKey) -> str | None:
        """The cached hash of ``path`` when its stat is unchanged and not racy."""
        entry = self.entries.get(path)
        if entry is None or len(entry) != 5 or (entry[0], entry[1], entry[2], entry[3]) != key:
            return None
        if max(key[1], key[3]) >= self.written_ns - RACY_NS:
            return None
        digest = entry[4]
        return digest if isinstance(digest, str) else None

    def record(self, path: str, key: StatKey, digest: str, *, hit: bool) -> None:
        self.seen[path] = [*key, digest]
        if not hit:
            self.dirty = True

    def mark_checked(self, revision_id: str, fingerprint: str) -> None:
        if (revision_id, fingerprint) != (self.checked_revision, self.checked_fingerprint):
            self.checked_revision, self.checked_fingerprint = revision_id, fingerprint
            self.dirty = True

    def save(self, path: Path) -> None:
        if not self.dirty and self.seen.keys() == self.entries.keys():
            return
        payload = {
            "version": VERSION,
            "root": self.root,
            "written_ns": time.time_ns(),
            "checked": [self.checked_revision, self.checked_fingerprint],
            "entries": self.seen,
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(payload, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)


def load(path: Path | None, root: Path) -> StatCache | None:
    """The cache at ``path`` for ``root`` (empty when absent or unusable); None without a path."""
    if path is None:
        return None
    cache = StatCache(root=str(root))
    try:
        data = json.loads(path.read_bytes())
        if data.get("version") != VERSION or data.get("root") != str(root):
            return cache
        cache.written_ns = int(data["written_ns"])
        cache.checked_revision, cache.checked_fingerprint = data["checked"]
        entries = data["entries"]
        if not isinstance(entries, dict):
            return StatCache(root=str(root))
        cache.entries = entries
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return StatCache(root=str(root))
    return cache
