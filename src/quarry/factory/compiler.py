"""Working copy -> immutable revision -> promotion.

Two phases keep ``quarry compile --check`` free of side effects: ``analyze`` reads
the folder and validates everything (reusing the previous revision's parse of any
file whose bytes did not change, which is what makes a one-file recompile of a large
workspace cheap), and ``publish`` uploads new blobs, stores the revision and
promotes it with a compare-and-swap.

Definition files are parsed by a :class:`~quarry.factory.isolation.Parser`: in a
compile process with memory, stack and time limits (a poison file fails its own
parse, never the Factory) and under the YAML limits; no file over the file API's
size caps is read (:class:`~quarry.factory.isolation.CompileLimits`).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from quarry.core.clock import utcnow
from quarry.core.errors import WARNING, CompileFailed, Problem
from quarry.core.hashing import canonical_json, sha256_hex, short_id
from quarry.core.metrics import COMPILE_DURATION
from quarry.definitions.config_salvage import ConfigFacts, facts_of, salvage
from quarry.definitions.kinds import Kind, unread_kind, workflow_names
from quarry.definitions.references import Ref, ReferenceIndex, check_references
from quarry.definitions.sql_routes import routing_routes, sql_route_problems
from quarry.definitions.template_names import template_name_problems
from quarry.definitions.yaml_nodes import load_document
from quarry.factory import prior, statcache
from quarry.factory.gitinfo import GitInfo, read_git_info
from quarry.factory.isolation import CompileLimits, Parser
from quarry.factory.scan import DEFAULT_LIMITS, SourceFile, Tree, read_capped, scan_tree
from quarry.factory.semantic_checks import check_workspace
from quarry.scheduling.sync import sync_triggers
from quarry.store import revisions as rq
from quarry.store import workspaces as wq
from quarry.store.db import Engine
from quarry.store.objects import ObjectStore, blob_key
from quarry.store.workspaces import WorkspaceRow

log = logging.getLogger(__name__)

COMPILER_VERSION = "1"
CONFIG_FILES = statcache.CONFIG_FILES

# What an earlier revision already knows of a file, keyed by (path, source hash).
Known = prior.Known


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
    base_revision: str | None = None
    # the blob hashes of ``base_revision``'s files, when the stat cache knew them
    base_blobs: set[str] | None = None
    # what the files parsed by this analysis hold that is ignored, as Oxy ignores it
    warnings: list[Problem] = field(default_factory=list)
    # source hash -> the tasks' own positions JSON of the workflows and apps parsed
    new_positions: dict[str, str] = field(default_factory=dict)


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


def _read_config(root: Path, limit: int = DEFAULT_LIMITS.text_bytes) -> tuple[str, bytes]:
    for name in CONFIG_FILES:
        candidate = root / name
        if candidate.is_file() and not candidate.is_symlink():
            return name, read_capped(candidate, name, limit)
    raise CompileFailed(
        problems=[Problem("config.yml", 1, 1, "config.yml is missing at the workspace root")]
    )


def analyze(
    root: Path,
    known: Known | Callable[[], Known] | None = None,
    *,
    stat_cache: Path | None = None,
    known_revision: str | None = None,
    strict: bool = False,
    limits: CompileLimits | None = None,
    template_names: bool = False,
) -> Analysis:
    """Validate a working copy completely; raises ``CompileFailed`` with every problem.

    ``known`` holds (or, called, loads) the definitions of revision ``known_revision``;
    ``stat_cache`` is the stat cache file of this workspace (see
    :mod:`quarry.factory.statcache`). When that cache describes ``known_revision``
    itself, the definitions come from it and ``known`` is consulted only for the
    stored references a full reference check needs.

    Every problem of every file is collected before failing, a broken config.yml
    included (the rest is checked against what could be read of it). Warnings
    (what Oxy would ignore) do not fail the analysis unless ``strict``; they are
    reported for the files parsed by this analysis (all of them without ``known``).
    ``limits``: what files may cost and where they are parsed (default: the
    settings' defaults). ``template_names`` (``quarry compile --check``): also warn
    of names the templates of parsed workflows and apps use that nothing defines.
    """
    root = root.resolve()
    if not root.is_dir():
        raise CompileFailed(problems=[Problem(str(root), 1, 1, "workspace folder not found")])
    limits = limits or CompileLimits()
    with Parser(limits) as parser:
        return _analyze(
            root, known, stat_cache, known_revision, strict, limits, parser, template_names
        )


def _analyze(
    root: Path,
    known: Known | Callable[[], Known] | None,
    stat_cache: Path | None,
    known_revision: str | None,
    strict: bool,
    limits: CompileLimits,
    parser: Parser,
    template_names: bool = False,
) -> Analysis:
    problems: list[Problem] = []
    cache = statcache.load(stat_cache, root)
    facts = _config_facts(root, problems, parser, limits.file_bytes, cache)
    tree = scan_tree(root, facts.dataset_dirs, cache, limits.file_caps)
    problems.extend(tree.problems)
    cached = cache.revision_facts(known_revision) if cache is not None else None
    if cached is not None:
        priors = prior.from_cache(cached)
    else:
        priors = prior.from_known((known() if callable(known) else known) or {})

    rows: list[rq.DefinitionRow] = []
    refs_by_path: dict[str, list[Ref]] = {}
    targets: dict[str, list[str]] = {}  # path -> the files its refs name
    # path -> stored refs JSON (or file targets, from the cache) of an unchanged file
    reused_info: dict[str, str | list[str]] = {}
    new_bodies: dict[str, tuple[str, str]] = {}
    new_positions: dict[str, str] = {}
    parsed = reused = 0
    known_rows = priors.rows
    parser.prefetch(_changed(tree, known_rows))  # one batch to the compile process
    for f in tree.files:
        if f.kind is None:
            continue
        found = known_rows.get((f.path, f.source_hash))
        if found is not None:
            rows.append(found[0])
            reused_info[f.path] = found[1]
            reused += 1
            continue
        try:
            row, refs, found_warnings = _parse(tree, f, new_bodies, parser, new_positions)
        except CompileFailed as failed:
            problems.extend(failed.problems)
            continue
        problems.extend(found_warnings)
        if template_names and f.kind in (Kind.WORKFLOW, Kind.APP):
            problems.extend(_template_name_warnings(tree, f, limits))
        parsed += 1
        rows.append(row)
        refs_by_path[f.path] = refs

    problems.extend(_unread_files(tree.all_paths))
    index = ReferenceIndex(
        paths=tree.all_paths,
        databases=facts.databases or set(),
        models=facts.models or set(),
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
        sources = {r.path: r.source_hash for r in rows}
        stored, missing = prior.stored_refs(reused_info, sources, known)
        refs_by_path.update(stored)
        for path in missing:  # the cache knew a definition the database does not
            refs_by_path[path] = _parse(
                tree,
                next(f for f in tree.files if f.path == path),
                new_bodies,
                parser,
                new_positions,
            )[1]
        reused_info = {}
    rows = _name_workflows(rows)
    problems.extend(_duplicate_names(rows))
    problems.extend(
        check_workspace(
            tree,
            rows,
            new_bodies,
            (row for row, _info in known_rows.values()),
            facts.databases,
            same_names_and_databases=incremental,
            parser=parser,
            yaml_limits=limits.yaml,
        )
    )
    unchecked = facts.unchecked_refs()
    for path, refs in refs_by_path.items():
        checkable = [r for r in refs if r.kind not in unchecked]
        problems.extend(check_references(path, checkable, index))
        targets[path] = prior.targets_of(refs)
    problems.extend(_sql_route_warnings(tree, rows, new_bodies, facts.databases))
    if strict:
        problems = [p.as_error() for p in problems]
    warnings = sorted({p for p in problems if p.severity == WARNING})
    if len(warnings) < len(set(problems)):
        if cache is not None and stat_cache is not None:
            cache.save(stat_cache)
        raise CompileFailed(problems=sorted(set(problems)))
    for path, info in reused_info.items():
        targets[path] = prior.targets_of_json(info) if isinstance(info, str) else info
    for target in {t for found in targets.values() for t in found}:
        tree.add_context(target)
    revision_id = _revision_id(tree.files)
    if cache is not None and stat_cache is not None:
        cache.mark_checked(revision_id, fingerprint)
        cache.remember(prior.facts(revision_id, rows, targets, tree.files))
        cache.save(stat_cache)
    return Analysis(
        revision_id=revision_id,
        files=tree.files,
        tree=tree,
        definitions=rows,
        new_bodies=new_bodies,
        new_positions=new_positions,
        git=read_git_info(root),
        parsed=parsed,
        reused=reused,
        base_revision=known_revision,
        base_blobs=priors.blobs,
        warnings=warnings,
    )


def _template_name_warnings(tree: Tree, f: SourceFile, limits: CompileLimits) -> list[Problem]:
    """Names the file's templates use that it does not define (it parsed already, so
    reading it again with the same YAML limits succeeds)."""
    assert f.kind is not None
    data = tree.content(f)
    try:
        document = load_document(f.path, data, limits.yaml)
    except CompileFailed:
        return []
    return template_name_problems(f.path, f.kind, document.root, data.decode("utf-8-sig"))


def _changed(tree: Tree, known_rows: Container[tuple[str, str]]) -> Iterator[tuple[str, bytes]]:
    """The definition files no earlier revision parsed, with their bytes."""
    for f in tree.files:
        if f.kind is None or (f.path, f.source_hash) in known_rows:
            continue
        try:
            yield f.path, tree.content(f)
        except CompileFailed:
            tree.contents.pop(f.path, None)  # read (and fail) again where it is parsed


def _parse(
    tree: Tree,
    f: SourceFile,
    new_bodies: dict[str, tuple[str, str]],
    parser: Parser,
    new_positions: dict[str, str],
) -> tuple[rq.DefinitionRow, list[Ref], list[Problem]]:
    """Parse one definition file; its body and refs JSON go into ``new_bodies``, its
    tasks' positions (by source hash: they move with the bytes, not the body) into
    ``new_positions``."""
    definition = parser.parse_definition(f.path, tree.content(f))
    body, refs_json = definition.body_json, definition.refs_json
    content_hash = sha256_hex(f"{definition.kind}\n{body}".encode())
    new_bodies[content_hash] = (body, refs_json)
    if definition.positions_json:
        new_positions[f.source_hash] = definition.positions_json
    row = rq.DefinitionRow(
        kind=definition.kind.value,
        name=definition.name,
        path=f.path,
        source_hash=f.source_hash,
        content_hash=content_hash,
    )
    return row, list(definition.refs), list(definition.warnings)


def _config_facts(
    root: Path,
    problems: list[Problem],
    parser: Parser,
    limit: int,
    cache: statcache.StatCache | None = None,
) -> ConfigFacts:
    """Read config.yml first (other files are checked against it). Its problems go
    to ``problems`` and the analysis goes on with what could be read of it; the
    loop over the files parses it again (or reuses it) like any definition, and the
    repeated problems are merged.

    The facts of a config.yml that parsed are kept in the stat cache by the sha256 of
    its bytes; the same bytes are not parsed again (so an unchanged workspace needs
    no compile process)."""
    try:
        config_path, config_bytes = _read_config(root, limit)
    except CompileFailed as failed:
        problems.extend(failed.problems)
        return ConfigFacts(databases=None, models=None, dataset_dirs=[])
    digest = sha256_hex(config_bytes)
    known = cache.config_facts(config_path, digest) if cache is not None else None
    if known is not None:
        return ConfigFacts(
            databases=set(known["databases"]),
            models=set(known["models"]),
            dataset_dirs=list(known["dataset_dirs"]),
        )
    try:
        definition = parser.parse_definition(config_path, config_bytes)
    except CompileFailed as failed:
        problems.extend(failed.problems)
        return salvage(config_path, config_bytes)
    facts = facts_of(definition.model)  # type: ignore[arg-type]
    if cache is not None and facts.databases is not None and facts.models is not None:
        cache.remember_config(
            statcache.config_record(
                config_path, digest, facts.databases, facts.models, facts.dataset_dirs
            )
        )
    return facts


def _sql_route_warnings(
    tree: Tree,
    rows: list[rq.DefinitionRow],
    new_bodies: dict[str, tuple[str, str]],
    databases: set[str] | None,
) -> list[Problem]:
    """Routing agents parsed in this compile that route to ``.sql`` files whose
    ``oxy:`` header names no usable database: a warning at each such file (a turn
    leaves the route out, issue #17)."""
    agents = []
    for row in rows:
        if row.kind == Kind.AGENT and row.content_hash in new_bodies:
            routes = routing_routes(new_bodies[row.content_hash][0])
            if routes:
                agents.append((row.path, routes))
    if not agents:
        return []
    files = {f.path: f for f in tree.files}

    def read(path: str) -> str | None:
        try:
            return tree.content(files[path]).decode("utf-8", "replace")
        except CompileFailed:
            return None

    return sql_route_problems(agents, files, read, databases)


def _unread_files(paths: set[str]) -> list[Problem]:
    """One warning per file (or folder) of an Oxy kind Quarry does not read yet."""
    seen: dict[str, str] = {}
    for path in sorted(paths):
        found = unread_kind(path)
        if found is not None:
            seen.setdefault(*found)
    return [
        Problem(where, 1, 1, f"{what}: Quarry does not read these yet; not compiled", WARNING)
        for where, what in seen.items()
    ]


def _fingerprint(index: ReferenceIndex) -> str:
    """A digest of everything a reference can resolve against."""
    parts = [index.paths, index.databases, index.models, index.views, index.topics]
    return sha256_hex("\x00".join("\n".join(sorted(p)) for p in parts).encode())


def _name_workflows(rows: list[rq.DefinitionRow]) -> list[rq.DefinitionRow]:
    """Workflow files sharing a stem (``a.workflow.yml``, ``a.procedure.yml``) are
    named by their full paths (see :func:`workflow_names`); decided from the paths
    every compile, so a reused row follows its siblings coming and going."""
    names = workflow_names(r.path for r in rows if r.kind == Kind.WORKFLOW.value)
    return [
        row._replace(name=names[row.path])
        if row.kind == Kind.WORKFLOW.value and names[row.path] != row.name
        else row
        for row in rows
    ]


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


def known_from_revision(engine: Engine, workspace_id: str, revision_id: str | None) -> Known:
    return prior.from_database(engine, workspace_id, revision_id)


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
        if base is not None and base == analysis.base_revision and analysis.base_blobs is not None:
            have = set(analysis.base_blobs)
        else:
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
        rq.insert_task_positions(conn, analysis.new_positions)
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
    strict: bool = False,
    limits: CompileLimits | None = None,
) -> CompileResult:
    """Compile ``root`` for ``workspace`` against its current revision, and promote.

    ``stat_cache``: this workspace's stat cache file (see :mod:`quarry.factory.statcache`).
    ``strict``: warnings (what Oxy would ignore) fail the compile like errors.
    ``limits``: what the files may cost and where they are parsed
    (:class:`~quarry.factory.isolation.CompileLimits`; default: the settings' defaults).
    """
    started = time.perf_counter()
    outcome = "failed"
    try:
        with _no_gc_pauses():
            result = _compile(
                engine,
                store,
                workspace,
                root,
                promote=promote,
                stat_cache=stat_cache,
                strict=strict,
                limits=limits,
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
    strict: bool = False,
    limits: CompileLimits | None = None,
) -> CompileResult:
    started = time.perf_counter()
    with engine.connect() as conn:
        expected = wq.current_revision_id(conn, workspace.id)

    def known() -> Known:  # loaded only when the stat cache does not describe ``expected``
        return known_from_revision(engine, workspace.id, expected)

    analysis = analyze(
        root, known, stat_cache=stat_cache, known_revision=expected, strict=strict, limits=limits
    )
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
        problems=analysis.warnings,
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
