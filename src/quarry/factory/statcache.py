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

After a successful analysis it also keeps what that revision (``revision["id"]``)
holds: each definition's path, source hash, kind, name and content hash, the files
its references name, and the hashes of the revision's blob files. A recompile whose
base is that very revision takes the previous definitions from here instead of
loading them from the database (see :mod:`quarry.factory.prior`). This is sound
because a revision id is derived from its files' paths, roles and hashes: whichever
process stored that revision, its rows are what these files give. The revision's
hashes are kept apart from the stat hashes, so a damaged stat hash still differs
from what the revision holds and the file is read (and re-hashed). A failed analysis
saves the stat entries and no revision.

It also keeps what config.yml says (its databases, models and data folders, the
facts every other file is checked against), keyed by the sha256 of its bytes: a
compile whose config.yml is unchanged does not parse it again, and a compile with
nothing else to parse then needs no compile process at all (``quarry run`` of an
unchanged workspace starts none).

The file is JSON in columns (one list per field rather than one list per file): that
is about half the encoding and decoding work of a list per entry, and the compile
reads and writes it once each. It is written atomically (a temporary file, then
``os.replace``); a missing, unreadable or foreign cache is simply empty. Saving is
best effort.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

RACY_NS = 2_000_000_000
CONFIG_FILES = ("config.yml", "config.yaml")  # the first present is the workspace's
VERSION = 2

# (size, mtime_ns, inode, ctime_ns)
StatKey = tuple[int, int, int, int]


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def cache_path(data_dir: Path, workspace_id: str) -> Path:
    return data_dir / "statcache" / f"{workspace_id}.json"


def _root_pointer(data_dir: Path, root: Path) -> Path:
    name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:32]
    return data_dir / "statcache" / "roots" / name


def remember_root(data_dir: Path, root: Path, workspace_id: str) -> None:
    """Note which workspace's cache describes the folder ``root`` (local mode), so
    :func:`parse_needed` finds it before the state database is opened. Best effort."""
    pointer = _root_pointer(data_dir, root)
    try:
        if pointer.is_file() and pointer.read_text() == workspace_id:
            return
        pointer.parent.mkdir(parents=True, exist_ok=True)
        tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
        tmp.write_text(workspace_id)
        os.replace(tmp, pointer)
    except OSError:
        pass


def parse_needed(data_dir: Path, root: Path) -> bool:
    """Whether compiling the folder ``root`` will likely parse a file, decided from
    its stat cache alone (no database, no heavy import): True unless the cache holds
    config.yml's facts for its present bytes and every definition file of the last
    revision it saw is unchanged (same stat, or same sha256). ``quarry run`` starts
    a compile process ahead only when this says one is needed. A definition file
    added since is not noticed: the compile then starts its process when it meets it.
    """
    try:
        workspace_id = _root_pointer(data_dir, root).read_text()
        cache = load(cache_path(data_dir, workspace_id), root.resolve())
        assert cache is not None
        revision = cache.revision
        if cache.config is None or revision is None:
            return True
        config = next(
            (n for n in CONFIG_FILES if (root / n).is_file() and not (root / n).is_symlink()),
            None,
        )
        if config is None:
            return True
        digest = hashlib.sha256((root / config).read_bytes()).hexdigest()
        if cache.config_facts(config, digest) is None:
            return True
        for path, source in zip(revision["paths"], revision["sources"], strict=True):
            file = root / path
            if cache.lookup(path, stat_key(os.stat(file, follow_symlinks=False))) == source:
                continue
            if hashlib.sha256(file.read_bytes()).hexdigest() != source:
                return True
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return False


@dataclass
class StatCache:
    root: str
    # path -> stat key and path -> sha256, as loaded
    keys: dict[str, StatKey] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    written_ns: int = 0
    checked_revision: str | None = None
    checked_fingerprint: str | None = None
    # what the last successful analysis's revision holds (``prior.facts`` layout)
    revision: dict[str, Any] | None = None
    # what this run saw (path -> (stat key, sha256)), saved by ``save``
    seen: dict[str, tuple[StatKey, str]] = field(default_factory=dict)
    seen_revision: dict[str, Any] | None = None
    # config.yml's facts (``config_record`` layout), as loaded, then as this run saw them
    config: dict[str, Any] | None = None
    dirty: bool = False

    @property
    def racy_limit(self) -> int:
        """An entry whose mtime or ctime is at or after this is racy."""
        return self.written_ns - RACY_NS

    def lookup(self, path: str, key: StatKey) -> str | None:
        """The cached hash of ``path`` when its stat is unchanged and not racy."""
        if self.keys.get(path) != key or max(key[1], key[3]) >= self.written_ns - RACY_NS:
            return None
        return self.hashes.get(path)

    def record(self, path: str, key: StatKey, digest: str, *, hit: bool) -> None:
        self.seen[path] = (key, digest)
        if not hit:
            self.dirty = True

    def mark_checked(self, revision_id: str, fingerprint: str) -> None:
        if (revision_id, fingerprint) != (self.checked_revision, self.checked_fingerprint):
            self.checked_revision, self.checked_fingerprint = revision_id, fingerprint
            self.dirty = True

    def revision_facts(self, revision_id: str | None) -> dict[str, Any] | None:
        """What the cache holds of revision ``revision_id``, if it describes it."""
        facts = self.revision
        if revision_id is None or facts is None or facts.get("id") != revision_id:
            return None
        return facts

    def remember(self, facts: dict[str, Any]) -> None:
        """Keep what this run's revision holds (``facts["id"]`` names it)."""
        old = self.revision
        if old is None or old.get("id") != facts.get("id"):
            self.dirty = True
        self.seen_revision = facts

    def config_facts(self, path: str, digest: str) -> dict[str, Any] | None:
        """The stored facts of config file ``path`` when its bytes hash to ``digest``."""
        record = self.config
        if record is None or record.get("path") != path or record.get("source") != digest:
            return None
        return record

    def remember_config(self, record: dict[str, Any]) -> None:
        """Keep config.yml's facts (:func:`config_record`) from a successful parse."""
        if record != self.config:
            self.config = record
            self.dirty = True

    def save(self, path: Path) -> None:
        if not self.dirty and self.seen.keys() == self.keys.keys():
            return
        paths = list(self.seen)
        entries = self.seen.values()
        payload = {
            "version": VERSION,
            "root": self.root,
            "written_ns": time.time_ns(),
            "checked": [self.checked_revision, self.checked_fingerprint],
            "paths": paths,
            "stats": list(chain.from_iterable(k for k, _ in entries)),
            "hashes": [h for _, h in entries],
            "revision": self.seen_revision,
            "config": self.config,
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(payload, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)


def only_strings(values: Any) -> bool:
    """A list whose items are all ``str`` (checked without a Python-level loop)."""
    return isinstance(values, list) and set(map(type, values)) <= {str}


def config_record(
    path: str, digest: str, databases: set[str], models: set[str], dataset_dirs: list[str]
) -> dict[str, Any]:
    """What the cache keeps of a config file that parsed: its path, the sha256 of its
    bytes and the names and folders it defines."""
    return {
        "path": path,
        "source": digest,
        "databases": sorted(databases),
        "models": sorted(models),
        "dataset_dirs": list(dataset_dirs),
    }


def _config(record: Any) -> dict[str, Any] | None:
    """A loaded config record, or None when absent or malformed."""
    if not isinstance(record, dict):
        return None
    texts = (record.get("path"), record.get("source"))
    lists = (record.get("databases"), record.get("models"), record.get("dataset_dirs"))
    if not all(isinstance(t, str) for t in texts) or not all(only_strings(v) for v in lists):
        return None
    return record


def load(path: Path | None, root: Path) -> StatCache | None:
    """The cache at ``path`` for ``root`` (empty when absent or unusable); None without a path."""
    if path is None:
        return None
    cache = StatCache(root=str(root))
    try:
        data = json.loads(path.read_bytes())
        if data.get("version") != VERSION or data.get("root") != str(root):
            return cache
        written_ns = int(data["written_ns"])
        checked_revision, checked_fingerprint = data["checked"]
        paths, stats, hashes = data["paths"], data["stats"], data["hashes"]
        revision = data["revision"]
        if not (
            only_strings(paths)
            and only_strings(hashes)
            and isinstance(stats, list)
            and set(map(type, stats)) <= {int}
            and len(stats) == 4 * len(paths)
            and len(hashes) == len(paths)
            and isinstance(revision, dict | None)
        ):
            return cache
        it = iter(stats)
        cache.keys = dict(zip(paths, zip(it, it, it, it, strict=True), strict=True))
        cache.hashes = dict(zip(paths, hashes, strict=True))
        cache.written_ns = written_ns
        cache.checked_revision, cache.checked_fingerprint = checked_revision, checked_fingerprint
        cache.revision = revision
        cache.config = _config(data.get("config"))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return StatCache(root=str(root))
    return cache
