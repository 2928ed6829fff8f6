"""Semantic validation of a working copy, reported at the file and line of each problem.

Views and topics parse one file at a time; whether they work *together* (topic
views exist, datasources are databases of config.yml, no two equally short join
paths) needs all of them, so the Factory runs :meth:`SemanticModel.validate` over
the whole set and maps each :class:`SemanticProblem` (definition name + field
path) back to the YAML node that holds it.

The model is built from the definitions' canonical bodies (what the compile child
process returned), never by reading and composing the files here: the bodies of
files parsed by this compile are at hand; those of unchanged files are asked of the
same guarded parser, and only when a view or topic changed (or the names and
databases they resolve against did). A one-file recompile of anything else costs
nothing. Only a file with a problem is read again, with the same YAML limits, to
find the line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping

from yaml import Node

from quarry.core.errors import CompileFailed, Problem
from quarry.definitions.kinds import Kind
from quarry.definitions.models.semantic import (
    MotifConfig,
    SavedQueryConfig,
    TopicConfig,
    ViewConfig,
)
from quarry.definitions.parse import load_model
from quarry.definitions.yaml_nodes import YamlLimits, load_document, locate, position
from quarry.factory.isolation import Parser
from quarry.factory.scan import Tree
from quarry.store.revisions import DefinitionRow

_SEMANTIC = (Kind.VIEW.value, Kind.TOPIC.value, Kind.MOTIF.value, Kind.QUERY.value)


def check_workspace(
    tree: Tree,
    rows: list[DefinitionRow],
    new_bodies: Mapping[str, tuple[str, str]],
    base_rows: Iterable[DefinitionRow],
    databases: Collection[str] | None,
    *,
    same_names_and_databases: bool,
    parser: Parser,
    yaml_limits: YamlLimits,
) -> list[Problem]:
    """The compiler's entry point: nothing to do unless the semantic inputs changed."""
    if not semantic_inputs_changed(
        rows, base_rows, new_bodies, same_names_and_databases=same_names_and_databases
    ):
        return []
    files = {f.path: f for f in tree.files}
    bodies = {h: body for h, (body, _refs) in new_bodies.items()}
    unchanged = [
        files[r.path]
        for r in rows
        if r.kind in _SEMANTIC and r.content_hash not in bodies and r.path in files
    ]
    parser.prefetch((f.path, tree.content(f)) for f in unchanged)  # one batch

    def body_of(path: str) -> str | None:
        try:
            return parser.parse_definition(path, tree.content(files[path])).body_json
        except CompileFailed:  # reported by the per-file compile
            return None

    def document_of(path: str) -> Node | None:
        try:
            return load_document(path, tree.content(files[path]), yaml_limits).root
        except CompileFailed:
            return None

    return semantic_problems(rows, bodies, databases, body_of=body_of, document_of=document_of)


def semantic_inputs_changed(
    rows: Iterable[DefinitionRow],
    base_rows: Iterable[DefinitionRow],
    fresh_hashes: Collection[str],
    *,
    same_names_and_databases: bool,
) -> bool:
    """Whether the views and topics (or what they resolve against) differ from the
    base revision's, which passed this check when it was compiled."""
    if not same_names_and_databases:
        return True
    now = {(r.path, r.content_hash) for r in rows if r.kind in _SEMANTIC}
    before = {(r.path, r.content_hash) for r in base_rows if r.kind in _SEMANTIC}
    return now != before or any(h in fresh_hashes for _, h in now)


def semantic_problems(
    rows: Iterable[DefinitionRow],
    bodies: Mapping[str, str],
    databases: Collection[str] | None,
    *,
    body_of: Callable[[str], str | None],
    document_of: Callable[[str], Node | None],
) -> list[Problem]:
    """Cross-file problems of the views and topics among ``rows``.

    ``bodies``: canonical body JSON by content hash (the files this compile parsed);
    ``body_of(path)``: the body of another (unchanged) file, through the guarded
    parser (None if it does not parse: its own problems are reported already);
    ``document_of(path)``: the YAML node tree of a file with a problem, for the line.
    """
    views: list[ViewConfig] = []
    topics: list[TopicConfig] = []
    motifs: list[MotifConfig] = []
    saved: list[SavedQueryConfig] = []
    paths: dict[tuple[str, str], str] = {}
    for row in rows:
        if row.kind not in _SEMANTIC:
            continue
        body = bodies.get(row.content_hash) or body_of(row.path)
        if body is None:
            continue
        parsed = load_model(Kind(row.kind), json.loads(body))
        if isinstance(parsed, ViewConfig):
            views.append(parsed)
            paths[("view", parsed.name)] = row.path
        elif isinstance(parsed, TopicConfig):
            topics.append(parsed)
            paths[("topic", parsed.name)] = row.path
        elif isinstance(parsed, MotifConfig):
            motifs.append(parsed)
            paths[("motif", parsed.name)] = row.path
        elif isinstance(parsed, SavedQueryConfig):
            saved.append(parsed)
            paths[("query", parsed.name)] = row.path
    if not views and not topics and not motifs and not saved:
        return []
    # The semantic compiler (sqlglot, ~0.1-0.2 s to import) only for workspaces with views.
    from quarry.semantic import SemanticModel

    model = SemanticModel.from_definitions(views, topics, motifs=motifs, saved_queries=saved)
    found = model.validate(databases, file_rules=False)
    problems = []
    for problem in found:
        path = paths.get((problem.kind, problem.name))
        if path is None or _a_reference(problem.kind, problem.field):
            continue
        root = document_of(path)
        line, column = 1, 1
        if root is not None:
            loc = tuple(int(p) if p.isdigit() else p for p in problem.field.split(".") if p)
            line, column = position(locate(root, loc).node)
        problems.append(Problem(path, line, column, problem.message))
    return sorted(set(problems))


def _a_reference(kind: str, field: str) -> bool:
    """A view's datasource and a topic's views are references the compiler checks
    already (with the known names listed): reported once, by that check."""
    if kind == "view":
        return field == "datasource"
    return kind == "topic" and field.startswith("views.") and field[6:].isdigit()
