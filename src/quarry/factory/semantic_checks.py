"""Semantic validation of a working copy, reported at the file and line of each problem.

Views and topics parse one file at a time; whether they work *together* (topic
views exist, datasources are databases of config.yml, no two equally short join
paths) needs all of them, so the Factory runs :meth:`SemanticModel.validate` over
the whole set and maps each :class:`SemanticProblem` (definition name + field
path) back to the YAML node that holds it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

import yaml

from quarry.core.errors import CompileFailed, Problem
from quarry.definitions.models.semantic import TopicConfig, ViewConfig
from quarry.definitions.parse import parse_definition
from quarry.definitions.yaml_nodes import locate, position
from quarry.semantic import SemanticModel


def semantic_problems(
    root: Path, paths: Iterable[str], databases: Collection[str]
) -> list[Problem]:
    """Problems of the ``*.view.yml``/``*.topic.yml`` among ``paths`` (workspace-relative).

    Files that do not parse are skipped: their own problems are reported by the
    per-file compile already.
    """
    views: list[ViewConfig] = []
    topics: list[TopicConfig] = []
    where: dict[tuple[str, str], tuple[str, yaml.Node]] = {}
    for path in sorted(paths):
        if not path.endswith((".view.yml", ".view.yaml", ".topic.yml", ".topic.yaml")):
            continue
        data = (root / path).read_bytes()
        try:
            parsed = parse_definition(path, data)
        except CompileFailed:  # the per-file compile reports these problems
            parsed = None
        if parsed is None:
            continue
        node = yaml.compose(data.decode("utf-8"))
        if node is None:
            continue
        if isinstance(parsed.model, ViewConfig):
            views.append(parsed.model)
            where[("view", parsed.model.name)] = (path, node)
        elif isinstance(parsed.model, TopicConfig):
            topics.append(parsed.model)
            where[("topic", parsed.model.name)] = (path, node)
    if not views and not topics:
        return []
    problems = []
    for found in SemanticModel.from_definitions(views, topics).validate(
        databases, file_rules=False
    ):
        located = where.get((found.kind, found.name))
        if located is None:
            continue
        path, node = located
        loc = tuple(int(p) if p.isdigit() else p for p in found.field.split(".") if p)
        line, column = position(locate(node, loc).node)
        problems.append(Problem(path, line, column, found.message))
    return sorted(set(problems))
