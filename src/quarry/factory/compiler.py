"""Working copy -> immutable revision -> promotion.

Two phases keep ``quarry compile --check`` free of side effects: ``analyze`` reads
the folder and validates everything (reusing the previous revision's parse of any
file whose bytes did not change, which is what makes a one-file recompile of a large
workspace cheap), and ``publish`` uploads new blobs, stores the revision and
promotes it with a compare-and-swap.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from quarry.core.clock import utcnow
from quarry.core.errors import CompileFailed, Problem
from quarry.core.hashing import canonical_json, sha256_hex, short_id
from quarry.core.metrics import COMPILE_DURATION
from quarry.definitions.kinds import Kind
from quarry.definitions.parse import config_names, dataset_dirs, parse_definition
from quarry.definitions.references import Ref, ReferenceIndex, RefKind, check_references
from quarry.factory import statcache
from quarry.factory.gitinfo import GitInfo, read_git_info
from quarry.factory.scan import SourceFile, Tree, scan_tree
from quarry.scheduling.sync import sync_triggers
from quarry.store import revisions as rq
from quarry.store import workspaces as wq
from quarry.store.objects import ObjectStore, blob_key
from quarry.store.workspaces import WorkspaceRow

log = logging.getLogger(__name__)

# The target of a FILE ref in stored refs JSON (canonical: keys sorted, no spaces).
_FILE_TARGET = re.compile(r'"kind":"file","line":\d+,"target":"((?:[^"\\]|\\.)*)"')

COMPILER_VERSION = "1"
CONFIG_FILES = ("config.yml", "config.yaml")

# What an earlier revision already knows of a file, keyed by (path, source hash).
Known = Mapping[tuple[str, str], tuple[rq.DefinitionRow, str]]


@dataclass
class Analysis:
    revision_id: str
    files: list[SourceFile]
    tree: Tree
    definitions: list[rq.DefinitionRow]
    new_bodies: dict[str, tuple[str, str]]
    git: GitInfo
    parsed: int = 0
    reused: int = 0


@dataclass
class CompileResult:
    workspace: str
    revision_id: str
    promoted: bool
    unchanged: bool
    definitions: int
    files: int
    parsed: int
    reused: int
    blobs_uploaded: int
    seconds: float
    git_commit: str | None = None
    problems: list[Problem] = field(default_factory=list)


def _revision_id(files: list[SourceFile]) -> str:
    manifest = {
        "compiler": COMPILER_VERSION,
        "files": [[f.path, f.role, f.source_hash] for f in files],
    }
    return short_id(sha256_hex(canonical_json(manifest)))


def _read_config(root: Path) -> tuple[str, bytes]:
    for name in CONFIG_FILES:
        candidate = root / name
        if candidate.is_file() and not candidate.is_symlink():
            return name, candidate.read_bytes()
    raise CompileFailed(
        problems=[Problem("config.yml", 1, 1, "config.yml is missing at the workspace root")]
    )


def analyze(
    root: Path,
    known: Known | None = None,
    *,
    stat_cache: Path | None = None,
    known_revision: str | None = None,
) -> Analysis:
    """Validate a working copy completely; raises ``CompileFailed`` with every problem.

    ``known`` holds the definitions of revision ``known_revision``; ``stat_cache`` is
    the stat cache file of this workspace (see :mod:`quarry.factory.statcache`).
    """
    root = root.resolve()
    if not root.is_dir():
        raise CompileFailed(problems=[Problem(str(root), 1, 1, "workspace folder not found")])
    known = known or {}
    config_path, config_bytes = _read_config(root)
    config = parse_definition(config_path, config_bytes)
    databases, models = config_names(config.model)  # type: ignore[arg-type]
    cache = statcache.load(stat_cache, root)
    tree = scan_tree(root, dataset_dirs(config.model), cache)  # type: ignore[arg-type]

    problems: list[Problem] = []
    rows: list[rq.DefinitionRow] = []
    refs_by_path: dict[str, list[Ref]] = {}
    reused_refs: dict[str, str] = {}  # path -> stored refs JSON of an unchanged file
    new_bodies: dict[str, tuple[str, str]] = {}
    parsed = reused = 0
    for f in tree.files:
        if f.kind is None:
            continue
        prior = known.get((f.path, f.source_hash))
        if prior is not None:
            rows.append(prior[0])
            reused_refs[f.path] = prior[1]
            reused += 1
            continue
        try:
            definition = parse_definition(f.path, tree.content(f))
        except CompileFailed as failed:
            problems.extend(failed.problems)
            continue
        parsed += 1
        body = canonical_json(definition.body).decode("utf-8")
        refs_json = canonical_json([r.to_json() for r in definition.refs]).decode("utf-8")
        content_hash = sha256_hex(f"{definition.kind}\n{body}".encode())
        new_bodies[content_hash] = (body, refs_json)
        rows.append(
            rq.DefinitionRow(
                kind=definition.kind.value,
                name=definition.name,
                path=f.path,
                source_hash=f.source_hash,
                content_hash=content_hash,
            )
        )
        refs_by_path[f.path] = list(definition.refs)

    index = ReferenceIndex(
        paths=tree.all_paths,
        databases=databases,
        models=models,
        views={r.name for r in rows if r.kind == Kind.VIEW},
        topics={r.name for r in rows if r.kind == Kind.TOPIC},
    )
    fingerprint = _fingerprint(index)
    # The refs of unchanged files were checked when ``known_revision`` was compiled;
    # while no path or name came or went since, they still resolve the same way.
    incremental = (
        cache is not None
        and known_revision is not None
        and (cache.checked_revision, cache.checked_fingerprint) == (known_revision, fingerprint)
    )
    if not incremental:
        for path, refs_json in reused_refs.items():
            refs_by_path[path] = [Ref.from_json(r) for r in json.loads(refs_json)]
        reused_refs = {}
    problems.extend(_duplicate_names(rows))
    for path, refs in refs_by_path.items():
        problems.extend(check_references(path, refs, index))
    if problems:
        if cache is not None and stat_cache is not None:
            cache.save(stat_cache)
        raise CompileFailed(problems=sorted(set(problems)))
    for target in _file_targets(refs_by_path, reused_refs):
        tree.add_context(target)
    revision_id = _revision_id(tree.files)
    if cache is not None and stat_cache is not None:
        cache.mark_checked(revision_id, fingerprint)
        cache.save(stat_cache)
    return Analysis(
        revision_id=revision_id,
        files=tree.files,
        tree=tree,
        definitions=rows,
        new_bodies=new_bodies,
        git=read_git_info(root),
        parsed=parsed,
        reused=reused,
    )


def _fingerprint(index: ReferenceIndex) -> str:
    """A digest of everything a reference can resolve against."""
    parts = [index.paths, index.databases, index.models, index.views, index.topics]
    return sha256_hex("\x00".join("\n".join(sorted(p)) for p in parts).encode())


def _duplicate_names(rows: list[rq.DefinitionRow]) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[tuple[str, str], str] = {}
    for row in rows:
        other = seen.setdefault((row.kind, row.name), row.path)
        if other != row.path:
            problems.append(
                Problem(row.path, 1, 1, f"{row.kind} name {row.name!r} is also defined in {other}")
            )
    return problems


def _file_targets(refs_by_path: dict[str, list[Ref]], reused_refs: dict[str, str]) -> set[str]:
    """Files the definitions reference (context documents ship with the revision)."""
    targets = {r.target for refs in refs_by_path.values() for r in refs if r.kind == RefKind.FILE}
    for refs_json in reused_refs.values():
        if '"file"' not in refs_json:
            continue
        found = _FILE_TARGET.findall(refs_json)
        if any("\\" in t for t in found):  # an escaped character: decode properly
            found = [r["target"] for r in json.loads(refs_json) if r["kind"] == "file"]
        targets.update(found)
    return targets


def known_from_revision(engine: Engine, workspace_id: str, revision_id: str | None) -> Known:
    if revision_id is None:
        return {}
    with engine.connect() as conn:
        pairs = rq.definitions_with_refs(conn, workspace_id, revision_id)
    return {(row.path, row.source_hash): (row, refs) for row, refs in pairs}


def _upload_blobs(
    engine: Engine,
    store: ObjectStore,
    tenant_id: str,
    analysis: Analysis,
    *,
    workspace_id: str,
    base: str | None,
) -> dict[str, int]:
    """Upload each blob the tenant does not have yet; the index row follows the upload,
    so an index row always means the object exists."""
    blobs = {f.source_hash: f for f in analysis.files if f.role != "definition"}
    with engine.connect() as conn:
        # the blobs of the revision this one replaces are known to be stored
        have = rq.revision_blob_hashes(conn, workspace_id, base) if base else set()
        have |= rq.known_blobs(conn, tenant_id, blobs.keys() - have)
    uploaded: dict[str, int] = {}
    for digest, f in blobs.items():
        if digest in have:
            continue
        store.put(blob_key(tenant_id, digest), analysis.tree.content(f))
        uploaded[digest] = f.size
    return uploaded


def publish(
    engine: Engine,
    store: ObjectStore,
    workspace: WorkspaceRow,
    analysis: Analysis,
    *,
    expected: str | None,
    promote: bool = True,
) -> tuple[bool, int]:
    """Store the revision (idempotently) and promote it; returns (promoted, uploads)."""
    uploaded = _upload_blobs(
        engine, store, workspace.tenant_id, analysis, workspace_id=workspace.id, base=expected
    )
    files = [
        rq.FileRow(path=f.path, role=f.role, blob_hash=f.source_hash, size=f.size)
        for f in analysis.files
        if f.role != "definition"
    ]
    new = rq.NewRevision(
        row=rq.RevisionRow(
            workspace_id=workspace.id,
            revision_id=analysis.revision_id,
            git_commit=analysis.git.commit,
            git_branch=analysis.git.branch,
            git_dirty=analysis.git.dirty,
            definition_count=len(analysis.definitions),
            file_count=len(analysis.files),
            compiler_version=COMPILER_VERSION,
            created_at=utcnow(),
        ),
        definitions=analysis.definitions,
        files=files,
    )
    with engine.begin() as conn:
        rq.record_blobs(conn, workspace.tenant_id, uploaded, utcnow())
        rq.insert_bodies(
            conn, {h: analysis.new_bodies[h] for h in rq.missing_bodies(conn, analysis.new_bodies)}
        )
        rq.insert_revision(conn, new)
    if not promote or expected == analysis.revision_id:
        return False, len(uploaded)
    with engine.begin() as conn:
        wq.promote(conn, workspace.id, new=analysis.revision_id, expected=expected)
        # Schedules and monitors move with the pointer, in the same transaction.
        sync_triggers(conn, workspace.tenant_id, workspace.id, analysis.revision_id)
    return True, len(uploaded)


@contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Analysis allocates tens of thousands of long-lived small objects (rows, files,
    cache entries) and no cycles; the cyclic collector would scan them all again and
    again. Pause it for the analysis, then collect once."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def compile_workspace(
    engine: Engine,
    store: ObjectStore,
    workspace: WorkspaceRow,
    root: Path,
    *,
    promote: bool = True,
    stat_cache: Path | None = None,
) -> CompileResult:
    """Compile ``root`` for ``workspace`` against its current revision, and promote.

    ``stat_cache``: this workspace's stat cache file (see :mod:`quarry.factory.statcache`).
    """
    started = time.perf_counter()
    outcome = "failed"
    try:
        with _no_gc_pauses():
            result = _compile(
                engine, store, workspace, root, promote=promote, stat_cache=stat_cache
            )
        outcome = "ok"
        return result
    finally:
        COMPILE_DURATION.labels(outcome).observe(time.perf_counter() - started)


def _compile(
    engine: Engine,
    store: ObjectStore,
    workspace: WorkspaceRow,
    root: Path,
    *,
    promote: bool,
    stat_cache: Path | None,
) -> CompileResult:
    started = time.perf_counter()
    with engine.connect() as conn:
        expected = wq.current_revision_id(conn, workspace.id)
    known = known_from_revision(engine, workspace.id, expected)
    analysis = analyze(root, known, stat_cache=stat_cache, known_revision=expected)
    with engine.connect() as conn:
        stored = rq.revision_exists(conn, workspace.id, analysis.revision_id)
    uploads = 0
    promoted = False
    if not stored or expected != analysis.revision_id:
        promoted, uploads = publish(
            engine, store, workspace, analysis, expected=expected, promote=promote
        )
    result = CompileResult(
        workspace=workspace.name,
        revision_id=analysis.revision_id,
        promoted=promoted,
        unchanged=expected == analysis.revision_id,
        definitions=len(analysis.definitions),
        files=len(analysis.files),
        parsed=analysis.parsed,
        reused=analysis.reused,
        blobs_uploaded=uploads,
        seconds=time.perf_counter() - started,
        git_commit=analysis.git.commit,
    )
    log.info(
        "compiled %s -> %s (%d definitions, %d parsed, %d reused, %d blobs uploaded, "
        "promoted=%s) in %.3fs",
        workspace.name,
        result.revision_id,
        result.definitions,
        result.parsed,
        result.reused,
        uploads,
        promoted,
        result.seconds,
    )
    return result
