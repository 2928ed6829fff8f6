"""Walking a working copy: which files a revision is made of.

A revision holds the definition files, the ``.sql`` files and the files under the
dataset folders that ``config.yml`` names; everything else in the folder (READMEs,
editor files) does not change the revision. ``.git`` and ``.quarry`` are never read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from quarry.core.hashing import sha256_hex
from quarry.definitions.kinds import Kind, classify_path

SKIPPED_DIRS = frozenset({".git", ".quarry", "__pycache__", "node_modules", ".venv"})
DATA_SUFFIXES = frozenset(
    {".csv", ".parquet", ".json", ".jsonl", ".ndjson", ".tsv", ".db", ".duckdb"}
)


@dataclass(frozen=True)
class SourceFile:
    path: str
    role: str  # "definition" | "sql" | "data" | "context"
    kind: Kind | None
    source_hash: str
    size: int


def _role(relpath: str, dataset_dirs: tuple[str, ...]) -> tuple[str, Kind | None] | None:
    kind = classify_path(relpath)
    if kind is not None:
        return "definition", kind
    if relpath.endswith(".sql"):
        return "sql", None
    in_dataset = any(relpath.startswith(d) for d in dataset_dirs)
    if in_dataset and os.path.splitext(relpath)[1].lower() in DATA_SUFFIXES:
        return "data", None
    return None


@dataclass
class Tree:
    files: list[SourceFile]
    contents: dict[str, bytes]
    all_paths: set[str]

    def add_context(self, root: Path, relpath: str) -> None:
        """A file a definition references (an agent's context document) ships too."""
        if relpath in self.contents or relpath not in self.all_paths:
            return
        data = (root / relpath).read_bytes()
        self.contents[relpath] = data
        self.files.append(SourceFile(relpath, "context", None, sha256_hex(data), len(data)))
        self.files.sort(key=lambda f: f.path)


def scan_tree(root: Path, dataset_dirs: list[str]) -> Tree:
    """Every file of the revision with its hash and bytes (read once), and the paths of
    every other regular file, which references may name.

    Symlinks are not followed: a link could point outside the workspace.
    """
    dirs = tuple(d.rstrip("/") + "/" for d in dataset_dirs)
    files: list[SourceFile] = []
    contents: dict[str, bytes] = {}
    all_paths: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for filename in sorted(filenames):
            relpath = filename if rel_dir == "." else f"{rel_dir}/{filename}"
            full = Path(dirpath, filename)
            if full.is_symlink() or not full.is_file():
                continue
            all_paths.add(relpath)
            role = _role(relpath, dirs)
            if role is None:
                continue
            data = full.read_bytes()
            contents[relpath] = data
            files.append(SourceFile(relpath, role[0], role[1], sha256_hex(data), len(data)))
    return Tree(files, contents, all_paths)
