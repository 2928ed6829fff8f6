"""Walking a working copy: which files a revision is made of.

A revision holds the definition files, the ``.sql`` files and the files under the
dataset folders that ``config.yml`` names; everything else in the folder (READMEs,
editor files) does not change the revision. ``.git`` and ``.quarry`` are never read.

With a :class:`~quarry.factory.statcache.StatCache`, a file whose stat is unchanged
keeps its cached hash and is not read at all; bytes are read lazily, only for the
definitions that must be parsed and the blobs that must be uploaded.

Every file is held to the file API's size caps (:class:`~quarry.factory.files.Limits`)
however it got into the folder (a git pull, a local edit): an oversized file is a
problem of that file, decided on its stat, and no read takes more than the cap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple

from quarry.core.errors import CompileFailed, Problem
from quarry.core.hashing import sha256_hex
from quarry.definitions.kinds import Kind, classify_path
from quarry.factory.files import Limits
from quarry.factory.statcache import StatCache, StatKey, stat_key

SKIPPED_DIRS = frozenset({".git", ".quarry", "__pycache__", "node_modules", ".venv"})
DATA_SUFFIXES = frozenset(
    {".csv", ".parquet", ".json", ".jsonl", ".ndjson", ".tsv", ".db", ".duckdb"}
)


class SourceFile(NamedTuple):
    """One file of a revision (a tuple: a recompile makes one per file, 20,000 for a
    workspace of 10,000 definitions)."""

    path: str
    role: str  # "definition" | "sql" | "data" | "context"
    kind: Kind | None
    source_hash: str
    size: int


_SQL: tuple[str, Kind | None] = ("sql", None)

# The file API's defaults (settings file_max_bytes, dataset_file_max_bytes).
DEFAULT_LIMITS = Limits(text_bytes=2_000_000, dataset_bytes=50_000_000)


def too_large(relpath: str, size: int, limit: int, setting: str) -> Problem:
    return Problem(
        relpath, 1, 1, f"the file is {size} bytes; the limit is {limit} bytes ({setting})"
    )


def read_capped(path: Path, relpath: str, limit: int, setting: str = "file_max_bytes") -> bytes:
    """The bytes of ``path``, or ``CompileFailed`` if it holds more than ``limit``
    (read at most ``limit + 1`` bytes: a file that grew after its stat is not read
    whole either)."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise CompileFailed(problems=[too_large(relpath, size, limit, setting)])
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise CompileFailed(problems=[too_large(relpath, len(data), limit, setting)])
    return data


# The kind of a file below the root by the last two extensions of its name
# (".workflow.yml"), filled from ``classify_path`` as names are met.
_KIND_BY_SUFFIX: dict[str, Kind | None] = {}


def _kind(relpath: str) -> Kind | None:
    """``classify_path``, memoised: below the root a definition's kind is decided by the
    ``.<kind>.<ext>`` ending of a name that has something before it."""
    slash = relpath.rfind("/")
    last = relpath.rfind(".")
    cut = relpath.rfind(".", slash + 1, last) if last > slash else -1
    if slash < 0 or cut <= slash + 1:
        return classify_path(relpath)
    suffix = relpath[cut:]
    try:
        return _KIND_BY_SUFFIX[suffix]
    except KeyError:
        kind = _KIND_BY_SUFFIX[suffix] = classify_path(f"x{suffix}")
        return kind


def _role(relpath: str, dataset_dirs: tuple[str, ...]) -> tuple[str, Kind | None] | None:
    if relpath.endswith(".sql"):
        return _SQL
    kind = _kind(relpath) if relpath.endswith((".yml", ".yaml")) else None
    if kind is not None:
        return "definition", kind
    if relpath.startswith(dataset_dirs) and os.path.splitext(relpath)[1].lower() in DATA_SUFFIXES:
        return "data", None
    return None


@dataclass
class Tree:
    root: Path
    files: list[SourceFile]
    contents: dict[str, bytes]
    all_paths: set[str]
    cache: StatCache | None = None
    file_paths: set[str] = field(default_factory=set)
    limits: Limits = DEFAULT_LIMITS
    dataset_dirs: tuple[str, ...] = ()
    # files left out for their size (a problem each: the compile fails)
    problems: list[Problem] = field(default_factory=list)

    def cap(self, relpath: str) -> tuple[int, str]:
        """The size cap of a file and the setting that sets it."""
        if self.dataset_dirs and relpath.startswith(self.dataset_dirs):
            return self.limits.dataset_bytes, "dataset_file_max_bytes"
        return self.limits.text_bytes, "file_max_bytes"

    def read(self, relpath: str) -> bytes:
        """The bytes of a file (read from disk on first use, never past its cap)."""
        data = self.contents.get(relpath)
        if data is None:
            limit, setting = self.cap(relpath)
            data = read_capped(self.root / relpath, relpath, limit, setting)
            self.contents[relpath] = data
        return data

    def oversized(self, relpath: str, size: int) -> bool:
        """Whether a file of ``size`` bytes is over its cap (recorded as a problem)."""
        limit, setting = self.cap(relpath)
        if size <= limit:
            return False
        self.problems.append(too_large(relpath, size, limit, setting))
        return True

    def content(self, f: SourceFile) -> bytes:
        """The bytes ``f.source_hash`` names. A file the stat cache vouched for is read
        only now, so it is hashed again: if it changed since the scan, the compile
        fails rather than store bytes under another file's hash."""
        lazy = f.path not in self.contents
        data = self.read(f.path)
        if lazy and sha256_hex(data) != f.source_hash:
            raise CompileFailed(
                problems=[Problem(f.path, 1, 1, "the file changed while compiling; compile again")]
            )
        return data

    def add_context(self, relpath: str) -> None:
        """A file a definition references (an agent's context document) ships too."""
        if relpath in self.file_paths or relpath not in self.all_paths:
            return
        size = os.stat(self.root / relpath, follow_symlinks=False).st_size
        if self.oversized(relpath, size):
            raise CompileFailed(problems=self.problems[-1:])
        self.files.append(_source_file(self, relpath, ("context", None), None))
        self.files.sort(key=lambda f: f.path)


def _source_file(
    tree: Tree, relpath: str, role: tuple[str, Kind | None], key: StatKey | None
) -> SourceFile:
    tree.file_paths.add(relpath)
    cache = tree.cache
    if cache is None:
        data = tree.read(relpath)
        return SourceFile(relpath, role[0], role[1], sha256_hex(data), len(data))
    key = key or stat_key(os.stat(tree.root / relpath, follow_symlinks=False))
    digest = cache.lookup(relpath, key)
    if digest is not None:
        cache.record(relpath, key, digest, hit=True)
        return SourceFile(relpath, role[0], role[1], digest, key[0])
    data = tree.read(relpath)
    digest = sha256_hex(data)
    if len(data) == key[0]:  # otherwise it changed after the stat: not cached
        cache.record(relpath, key, digest, hit=False)
    return SourceFile(relpath, role[0], role[1], digest, len(data))


_FIRST = itemgetter(0)


def _walk(tree: Tree, path: str, rel: str, dirs: tuple[str, ...]) -> None:
    subdirs: list[tuple[str, str]] = []
    found: list[tuple[str, os.DirEntry[str]]] = []
    with os.scandir(path) as it:
        for entry in it:
            if entry.is_symlink():  # not followed: a link could point outside the workspace
                continue
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in SKIPPED_DIRS:
                    subdirs.append((entry.name, entry.path))
            elif entry.is_file(follow_symlinks=False):
                found.append((f"{rel}{entry.name}", entry))
    found.sort(key=_FIRST)
    cache = tree.cache
    files = tree.files
    add_path = tree.all_paths.add
    if cache is None:
        for relpath, entry in found:
            add_path(relpath)
            role = _role(relpath, dirs)
            if role is not None:
                if tree.oversized(relpath, entry.stat(follow_symlinks=False).st_size):
                    continue
                files.append(_source_file(tree, relpath, role, None))
    else:
        # the common case inline (this loop runs once per file of the workspace): an
        # unchanged, settled file keeps its cached hash; see StatCache.lookup
        cached_key, cached_hash, seen = cache.keys.get, cache.hashes, cache.seen
        limit = cache.racy_limit
        add_file = tree.file_paths.add
        text_cap = min(tree.limits.text_bytes, tree.limits.dataset_bytes)
        for relpath, entry in found:
            add_path(relpath)
            role = _role(relpath, dirs)
            if role is None:
                continue
            st = entry.stat(follow_symlinks=False)
            key = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
            if key[0] > text_cap and tree.oversized(relpath, key[0]):
                continue
            if cached_key(relpath) == key and key[1] < limit and key[3] < limit:
                digest = cached_hash[relpath]
                seen[relpath] = (key, digest)
                add_file(relpath)
                files.append(SourceFile(relpath, role[0], role[1], digest, key[0]))
            else:
                files.append(_source_file(tree, relpath, role, key))
    for name, sub in sorted(subdirs):
        _walk(tree, sub, f"{rel}{name}/", dirs)


def scan_tree(
    root: Path,
    dataset_dirs: list[str],
    cache: StatCache | None = None,
    limits: Limits | None = None,
) -> Tree:
    """Every file of the revision with its hash (in ``os.walk`` order: a folder's files,
    then its sub-folders, each sorted), and the paths of every other regular file,
    which references may name. A file over its size cap is left out with a problem
    in ``tree.problems``.
    """
    dirs = tuple(d.rstrip("/") + "/" for d in dataset_dirs)
    tree = Tree(
        root=root,
        files=[],
        contents={},
        all_paths=set(),
        cache=cache,
        limits=limits or DEFAULT_LIMITS,
        dataset_dirs=dirs,
    )
    _walk(tree, str(root), "", dirs)
    return tree
