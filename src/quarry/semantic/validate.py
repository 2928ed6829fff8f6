"""Compile-time checks of the semantic model: airlayer's rules plus references.

airlayer's ``validate`` rules: a view has ``table`` or ``sql`` (not both);
dimension names are unique and their ``expr`` non-empty; a measure other than
``count`` has an ``expr``; entity keys name dimensions of the view;
``{{x.y}}`` references in measures name an entity or a view. Quarry adds: every
expression parses as SQL; dimension and measure names share one namespace (both
are ``view.name``); the datasource exists in config.yml; a topic's views, base
view, default-filter fields and row-filter members exist and belong to it; within
a topic (or the whole model) no two views are linked by two equally short join
paths; motif and saved-query steps are well formed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

from quarry.semantic.errors import SemanticError, SemanticProblem
from quarry.semantic.expressions import parse_fragment, parse_query, references
from quarry.semantic.query import SemanticQuery

if TYPE_CHECKING:
    from quarry.definitions.models.semantic import TopicConfig, ViewConfig
    from quarry.semantic.model import SemanticModel

_PARSE_DIALECT = "duckdb"


def validate_model(
    model: SemanticModel, databases: Collection[str] | None
) -> list[SemanticProblem]:
    problems: list[SemanticProblem] = []
    entity_names = {e.name for v in model.views.values() for e in v.entities}
    for view in model.views.values():
        problems.extend(_view_problems(view, databases, entity_names, set(model.views)))
    for topic in model.topics.values():
        problems.extend(_topic_problems(model, topic))
    if not model.topics:
        problems.extend(_ambiguities(model, "view", None, sorted(model.views)))
    for motif in model.motifs.values():
        names = [o.name for o in motif.outputs]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(
                SemanticProblem("motif", motif.name, "outputs", f"output '{name}' is repeated")
            )
    for saved in model.saved_queries.values():
        for i, step in enumerate(saved.steps):
            try:
                SemanticQuery.from_request(step.query)
            except SemanticError as exc:
                problems.append(
                    SemanticProblem("query", saved.name, f"steps.{i}.query", exc.message)
                )
    return problems


def _view_problems(
    view: ViewConfig,
    databases: Collection[str] | None,
    entity_names: set[str],
    view_names: set[str],
) -> Iterator[SemanticProblem]:
    def problem(field: str, message: str) -> SemanticProblem:
        return SemanticProblem("view", view.name, field, message)

    if view.table is None and view.sql is None:
        yield problem("table", "a view needs either 'table' or 'sql'")
    if view.table is not None and view.sql is not None:
        yield problem("sql", "a view cannot have both 'table' and 'sql'")
    if view.sql is not None:
        try:
            parse_query(view.sql, _PARSE_DIALECT, "sql")
        except SemanticError as exc:
            yield problem("sql", exc.message)
    if databases is not None and view.datasource is not None and view.datasource not in databases:
        known = ", ".join(sorted(databases)) or "none"
        yield problem(
            "datasource", f"unknown database '{view.datasource}' (config.yml defines: {known})"
        )
    seen: dict[str, str] = {}
    for i, dim in enumerate(view.dimensions):
        if dim.name in seen:
            yield problem(f"dimensions.{i}.name", f"duplicate field name '{dim.name}'")
        seen.setdefault(dim.name, "dimension")
        if not dim.expr.strip():
            yield problem(f"dimensions.{i}.expr", f"dimension '{dim.name}' has an empty expr")
        else:
            yield from _parses(problem, f"dimensions.{i}.expr", dim.expr)
    for i, measure in enumerate(view.measures or []):
        if measure.name in seen:
            yield problem(
                f"measures.{i}.name",
                f"'{measure.name}' is already a {seen[measure.name]} of this view; "
                "dimensions and measures share one namespace",
            )
        seen.setdefault(measure.name, "measure")
        if measure.type != "count" and not measure.expr:
            yield problem(
                f"measures.{i}.expr",
                f"measure '{measure.name}' of type {measure.type} needs an expr",
            )
        if measure.expr:
            yield from _parses(problem, f"measures.{i}.expr", measure.expr)
            for ref, _field in references(measure.expr):
                if ref != "TABLE" and ref not in entity_names and ref not in view_names:
                    yield problem(
                        f"measures.{i}.expr",
                        f"measure '{measure.name}' refers to unknown entity or view '{ref}'",
                    )
        for j, f in enumerate(measure.filters or []):
            yield from _parses(problem, f"measures.{i}.filters.{j}.expr", f.expr)
    dimension_names = {d.name for d in view.dimensions}
    for i, entity in enumerate(view.entities):
        keys = entity.keys or ([entity.key] if entity.key else [])
        if not keys:
            yield problem(f"entities.{i}", f"entity '{entity.name}' needs 'key' or 'keys'")
        for key in keys:
            if key not in dimension_names:
                yield problem(
                    f"entities.{i}.key",
                    f"entity '{entity.name}' key '{key}' is not a dimension of this view",
                )


def _parses(problem: object, field: str, text: str) -> Iterator[SemanticProblem]:
    try:
        parse_fragment(text, _PARSE_DIALECT, field)
    except SemanticError as exc:
        assert callable(problem)
        yield problem(field, exc.message)


def _topic_problems(model: SemanticModel, topic: TopicConfig) -> Iterator[SemanticProblem]:
    def problem(field: str, message: str) -> SemanticProblem:
        return SemanticProblem("topic", topic.name, field, message)

    present = []
    for i, name in enumerate(topic.views):
        if name not in model.views:
            yield problem(f"views.{i}", f"unknown view '{name}'")
        else:
            present.append(name)
    if topic.base_view is not None and topic.base_view not in topic.views:
        yield problem("base_view", f"base view '{topic.base_view}' is not one of the topic's views")
    for i, f in enumerate(topic.default_filters or []):
        yield from _member_in_topic(model, topic, f"default_filters.{i}.field", f.field, problem)
    if topic.security is not None:
        for i, rule in enumerate(topic.security.row_filters):
            yield from _member_in_topic(
                model, topic, f"security.row_filters.{i}.member", rule.member, problem
            )
    yield from _ambiguities(model, "topic", topic.name, present)


def _member_in_topic(
    model: SemanticModel, topic: TopicConfig, field: str, name: str, problem: object
) -> Iterator[SemanticProblem]:
    assert callable(problem)
    qualified = name if "." in name else f"{topic.name}.{name}"
    try:
        member = model.member(qualified, topic=topic)
    except SemanticError as exc:
        yield problem(field, exc.message)
        return
    if member.is_measure:
        yield problem(field, f"'{qualified}' is a measure; only dimensions can be filtered here")


def _ambiguities(
    model: SemanticModel, kind: str, name: str | None, views: list[str]
) -> Iterator[SemanticProblem]:
    allowed = frozenset(views) if name is not None else None
    reported: set[frozenset[str]] = set()
    for source in views:
        for target in views:
            pair = frozenset((source, target))
            if source == target or pair in reported:
                continue
            try:
                model.join_path(source, target, allowed)
            except SemanticError as exc:
                if "ambiguous" in exc.message:
                    reported.add(pair)
                    yield SemanticProblem(kind, name or source, "views", exc.message)
