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

from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any

from quarry.definitions.semantic_rules import topic_rule_problems, view_rule_problems
from quarry.semantic.errors import SemanticError, SemanticProblem
from quarry.semantic.expressions import references
from quarry.semantic.model import Edge, _edges_of
from quarry.semantic.query import SemanticQuery
from quarry.semantic.saved_params import coerce, referenced, substitute

if TYPE_CHECKING:
    from quarry.definitions.models.semantic import SavedQueryConfig, TopicConfig, ViewConfig
    from quarry.semantic.model import SemanticModel


def validate_model(
    model: SemanticModel, databases: Collection[str] | None, *, file_rules: bool = True
) -> list[SemanticProblem]:
    """Every problem; ``file_rules=False`` leaves out those a single file shows
    (the Factory reports those when it parses the file)."""
    problems: list[SemanticProblem] = []
    entity_names = {e.name for v in model.views.values() for e in v.entities}
    for view in model.views.values():
        if file_rules:
            problems.extend(
                SemanticProblem("view", view.name, _dotted(loc), message)
                for loc, message in view_rule_problems(view)
            )
            problems.extend(_namespace_problems(view))
        problems.extend(_view_references(view, databases, entity_names, set(model.views)))
    for topic in model.topics.values():
        if file_rules:
            problems.extend(
                SemanticProblem("topic", topic.name, _dotted(loc), message)
                for loc, message in topic_rule_problems(topic)
            )
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
        problems.extend(_saved_query_problems(saved))
    return problems


def _saved_query_problems(saved: SavedQueryConfig) -> Iterator[SemanticProblem]:
    """Defaults of the right type, placeholders that name declared parameters, and
    steps that are queries once the defaults are in (a step using a parameter
    without a default is checked when it is run with a value)."""
    defaults: dict[str, Any] = {}
    for name, spec in saved.params.items():
        if spec.default is None:
            continue
        try:
            defaults[name] = coerce(saved.name, name, spec, spec.default)
        except SemanticError as exc:
            yield SemanticProblem("query", saved.name, f"params.{name}.default", exc.message)
    for i, step in enumerate(saved.steps):
        used = referenced(step.query)
        undeclared = sorted(used - set(saved.params))
        for name in undeclared:
            yield SemanticProblem(
                "query",
                saved.name,
                f"steps.{i}.query",
                f"step '{step.name}' uses parameter '{name}', which params do not declare",
            )
        if undeclared or not used <= set(defaults):
            continue
        try:
            SemanticQuery.from_request(substitute(saved, step.name, step.query, defaults))
        except SemanticError as exc:
            yield SemanticProblem("query", saved.name, f"steps.{i}.query", exc.message)


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _namespace_problems(view: ViewConfig) -> Iterator[SemanticProblem]:
    seen: dict[str, str] = {}
    for i, dim in enumerate(view.dimensions):
        if dim.name in seen:
            yield SemanticProblem(
                "view", view.name, f"dimensions.{i}.name", f"duplicate field name '{dim.name}'"
            )
        seen.setdefault(dim.name, "dimension")
    for i, measure in enumerate(view.measures or []):
        if measure.name in seen:
            yield SemanticProblem(
                "view",
                view.name,
                f"measures.{i}.name",
                f"'{measure.name}' is already a {seen[measure.name]} of this view; "
                "dimensions and measures share one namespace",
            )
        seen.setdefault(measure.name, "measure")


def _view_references(
    view: ViewConfig,
    databases: Collection[str] | None,
    entity_names: set[str],
    view_names: set[str],
) -> Iterator[SemanticProblem]:
    if databases is not None and view.datasource is not None and view.datasource not in databases:
        known = ", ".join(sorted(databases)) or "none"
        yield SemanticProblem(
            "view",
            view.name,
            "datasource",
            f"unknown database '{view.datasource}' (config.yml defines: {known})",
        )
    for i, measure in enumerate(view.measures or []):
        for ref, _field in references(measure.expr or ""):
            if ref != "TABLE" and ref not in entity_names and ref not in view_names:
                yield SemanticProblem(
                    "view",
                    view.name,
                    f"measures.{i}.expr",
                    f"measure '{measure.name}' refers to unknown entity or view '{ref}'",
                )


def _topic_problems(model: SemanticModel, topic: TopicConfig) -> Iterator[SemanticProblem]:
    def problem(field: str, message: str) -> SemanticProblem:
        return SemanticProblem("topic", topic.name, field, message)

    present = []
    for i, name in enumerate(topic.views):
        if name not in model.views:
            yield problem(f"views.{i}", f"unknown view '{name}'")
        else:
            present.append(name)
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
    """One breadth-first search per view counts the shortest paths to every other.

    Within a topic the search walks only the joins between the topic's views, made
    for them alone (:func:`_edges_within`): views sharing one entity join pairwise
    across the whole model (200 such views: 200 edges each), and a topic of two of
    them needs two. The paths counted, so the ties found, are the same as a search
    over the model's edges kept to the topic; the message of a tie comes from
    :meth:`SemanticModel.join_path`, as at query time.
    """
    allowed = frozenset(views) if name is not None else None
    edges_from = model.edges_from if allowed is None else _edges_within(model, allowed)
    reported: set[frozenset[str]] = set()
    for source in views:
        for target in _tied_targets(edges_from, source):
            pair = frozenset((source, target))
            if pair in reported:
                continue
            reported.add(pair)
            try:
                model.join_path(source, target, allowed)
            except SemanticError as exc:
                yield SemanticProblem(kind, name or source, "views", exc.message)


def _edges_within(model: SemanticModel, allowed: frozenset[str]) -> Callable[[str], list[Edge]]:
    """The join edges between ``allowed`` views: the model's own rule
    (:func:`~quarry.semantic.model._edges_of`) over the entity sides kept to those
    views, so each is an edge of the model (same multiplicity) whose target is in
    ``allowed``, and no such edge is missing."""
    entities = {e.name for v in allowed if v in model.views for e in model.views[v].entities}
    primaries = {
        n: [side for side in model._primaries[n] if side[0] in allowed]
        for n in entities
        if n in model._primaries
    }
    foreigns = {
        n: [side for side in model._foreigns[n] if side[0] in allowed]
        for n in entities
        if n in model._foreigns
    }
    made: dict[str, list[Edge]] = {}

    def edges_from(view: str) -> list[Edge]:
        found = made.get(view)
        if found is None:
            found = made[view] = _edges_of(
                model.views.get(view), primaries, foreigns, model._entity_order
            )
        return found

    return edges_from


def _tied_targets(edges_from: Callable[[str], list[Edge]], source: str) -> list[str]:
    """Views reached from ``source`` by more than one shortest path (breadth-first,
    counting paths as :func:`~quarry.semantic.model.count_join_paths` does)."""
    depth = {source: 0}
    ways = {source: 1}
    frontier = [source]
    while frontier:
        following: list[str] = []
        for view in frontier:
            for edge in edges_from(view):
                nxt = edge.target
                if nxt not in depth:
                    depth[nxt] = depth[view] + 1
                    ways[nxt] = ways[view]
                    following.append(nxt)
                elif depth[nxt] == depth[view] + 1:
                    ways[nxt] += ways[view]
        frontier = following
    return sorted(v for v, n in ways.items() if n > 1)
