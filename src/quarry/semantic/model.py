"""The semantic model: views, topics and the join graph, indexed once per revision.

A :class:`SemanticModel` is immutable after :meth:`SemanticModel.from_definitions`;
everything a query needs (members by qualified name, the entity graph, parsed
expressions per dialect, compiled plans) is looked up, never rebuilt, so serving a
query is cheap. Plans are cached on the model itself, so their lifetime is the
revision's.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from quarry.definitions.models.semantic import (
    Dimension,
    Measure,
    MotifConfig,
    SavedQueryConfig,
    TopicConfig,
    ViewConfig,
)
from quarry.semantic.errors import SemanticError, SemanticProblem

MemberKind = Literal["dimension", "measure", "time"]
_PLAN_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Member:
    """One queryable field, ``view.name``."""

    view: str
    name: str
    kind: MemberKind
    type: str
    definition: Dimension | Measure
    index: int  # position in the view's dimensions or measures list

    @property
    def qualified(self) -> str:
        return f"{self.view}.{self.name}"

    @property
    def is_measure(self) -> bool:
        return self.kind == "measure"


@dataclass(frozen=True)
class Edge:
    """A join from ``source`` to ``target`` through a shared entity.

    ``fans_out`` is true when one ``source`` row can meet many ``target`` rows
    (primary side to foreign side): aggregating ``source`` measures across it
    would count them more than once.
    """

    source: str
    target: str
    entity: str
    source_keys: tuple[str, ...]
    target_keys: tuple[str, ...]
    fans_out: bool


@dataclass(frozen=True)
class RowFilter:
    """A bound condition added to every subquery: ``member`` equals one of ``values``.

    Built from a topic's ``security:`` block and the caller's principal
    (:meth:`SemanticModel.row_filters_for`); the query cannot remove or widen it.
    ``protects`` are the views it guards (the secured topic's views): it applies to
    every query that reads any of them, whatever topic the query names (or none).
    Empty means it applies to every query.
    """

    member: str
    values: tuple[Any, ...]
    protects: frozenset[str] = frozenset()


@dataclass(frozen=True)
class JoinPath:
    edges: tuple[Edge, ...]


# (view, keys) of each entity name, on its primary and its foreign side
_Sides = dict[str, list[tuple[str, tuple[str, ...]]]]


@dataclass
class _Index:
    members: dict[str, Member] = field(default_factory=dict)
    primaries: _Sides = field(default_factory=dict)
    foreigns: _Sides = field(default_factory=dict)
    problems: list[SemanticProblem] = field(default_factory=list)


class SemanticModel:
    """Views, topics, motifs and saved queries of one revision, ready to query."""

    def __init__(
        self,
        views: Mapping[str, ViewConfig],
        topics: Mapping[str, TopicConfig],
        motifs: Mapping[str, MotifConfig],
        saved_queries: Mapping[str, SavedQueryConfig],
        index: _Index,
    ) -> None:
        self.views: Mapping[str, ViewConfig] = dict(views)
        self.topics: Mapping[str, TopicConfig] = dict(topics)
        self.motifs: Mapping[str, MotifConfig] = dict(motifs)
        self.saved_queries: Mapping[str, SavedQueryConfig] = dict(saved_queries)
        self.members: Mapping[str, Member] = index.members
        self._primaries = index.primaries
        self._foreigns = index.foreigns
        # Each view's edges, made on first use: views sharing a primary entity join
        # pairwise (200 such views: 40,000 edges), and a query or a topic check only
        # walks the edges of the views it reaches.
        self._edges: dict[str, list[Edge]] = {}
        self._entity_order = {name: i for i, name in enumerate(index.primaries)}
        self._build_problems = tuple(index.problems)
        self._lock = threading.Lock()
        self._plans: OrderedDict[Any, Any] = OrderedDict()
        self.compiles = 0  # plans made (not bound from the cache): for tests and benchmarks
        self._memo: dict[Any, Any] = {}
        self.param_token = _param_token(self.views)

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_definitions(
        cls,
        views: Sequence[ViewConfig],
        topics: Sequence[TopicConfig],
        motifs: Sequence[MotifConfig] = (),
        saved_queries: Sequence[SavedQueryConfig] = (),
    ) -> SemanticModel:
        index = _Index()
        by_name: dict[str, ViewConfig] = {}
        for view in views:
            if view.name in by_name:
                index.problems.append(
                    SemanticProblem("view", view.name, "name", "duplicate view name")
                )
                continue
            by_name[view.name] = view
            _index_members(view, index)
        _index_edges(by_name, index)
        topic_map: dict[str, TopicConfig] = {}
        for topic in topics:
            if topic.name in topic_map:
                index.problems.append(
                    SemanticProblem("topic", topic.name, "name", "duplicate topic name")
                )
            topic_map.setdefault(topic.name, topic)
        return cls(
            by_name,
            topic_map,
            {m.name: m for m in motifs},
            {q.name: q for q in saved_queries},
            index,
        )

    # -- lookups --------------------------------------------------------------------

    def member(self, qualified: str, *, topic: TopicConfig | None = None) -> Member:
        """The member ``view.name``; a :class:`SemanticError` naming it otherwise."""
        found = self.members.get(qualified)
        if found is None:
            view = qualified.split(".", 1)[0] if "." in qualified else None
            if "." not in qualified:
                raise SemanticError(
                    f"unknown member '{qualified}': members are named view.field",
                    member=qualified,
                )
            if view not in self.views:
                raise SemanticError(
                    f"unknown member '{qualified}': no view named '{view}'", member=qualified
                )
            raise SemanticError(
                f"unknown member '{qualified}': view '{view}' has no field "
                f"'{qualified.split('.', 1)[1]}'",
                member=qualified,
            )
        if topic is not None and found.view not in topic.views:
            raise SemanticError(
                f"member '{qualified}' is outside topic '{topic.name}' "
                f"(its views: {', '.join(topic.views)})",
                member=qualified,
            )
        return found

    def topic(self, name: str) -> TopicConfig:
        found = self.topics.get(name)
        if found is None:
            raise SemanticError(f"unknown topic '{name}'", topic=name)
        return found

    def edges_from(self, view: str) -> list[Edge]:
        found = self._edges.get(view)
        if found is None:  # computed twice by two threads at worst: the same list
            found = self._edges[view] = _edges_of(
                self.views.get(view), self._primaries, self._foreigns, self._entity_order
            )
        return found

    def join_path(
        self,
        source: str,
        target: str,
        allowed: Collection[str] | None,
        through: Collection[str] = (),
    ) -> JoinPath:
        """The unique shortest join path; ambiguous or missing paths are errors.

        ``through`` (view or entity names: the query's ``through`` and the topic's
        ``base_view``, as Oxy passes it) picks one of several equally short paths
        when exactly one of them goes through it.
        """
        key = (
            "path",
            source,
            target,
            tuple(sorted(allowed)) if allowed is not None else None,
            tuple(sorted(through)),
        )
        cached = self._memo.get(key)
        if cached is None:
            cached = _shortest_path(self, source, target, allowed)
            if isinstance(cached, SemanticError) and through and "ambiguous" in cached.message:
                picked = [
                    path
                    for path in _all_shortest(self, source, target, allowed)
                    if any(e.target in through or e.entity in through for e in path)
                ]
                if len(picked) == 1:
                    cached = JoinPath(picked[0])
            self._memo[key] = cached
        if isinstance(cached, SemanticError):
            raise cached
        assert isinstance(cached, JoinPath)
        return cached

    def row_filters_for(self, topic: str | None, principal: Mapping[str, Any]) -> list[RowFilter]:
        """The row filters this principal's queries must carry.

        Every secured topic's rules are returned, not only those of ``topic``:
        naming another topic (or none) must not be a way around a rule, so each
        rule guards its topic's views in any query that reads them (see
        :class:`RowFilter`). ``topic`` is checked to exist. A principal without a
        demanded attribute gets a filter that matches nothing: a missing attribute
        must never mean "sees everything".
        """
        if topic is not None:
            self.topic(topic)
        filters: dict[str, RowFilter] = {}
        for config in self.topics.values():
            if config.security is None:
                continue
            for rule in config.security.row_filters:
                value = principal.get(rule.attribute)
                if value is None:
                    values: tuple[Any, ...] = ()
                elif isinstance(value, (list, tuple, set, frozenset)):
                    values = tuple(value)
                else:
                    values = (value,)
                key = f"{rule.member}\x00{rule.attribute}"
                views = frozenset(config.views)
                if key in filters:  # the same rule in several topics guards all their views
                    views |= filters[key].protects
                filters[key] = RowFilter(rule.member, values, views)
        return [filters[k] for k in sorted(filters)]

    # -- plan cache -----------------------------------------------------------------

    def cached_plan(self, key: Any) -> Any:
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
            return plan

    def count_compile(self) -> None:
        with self._lock:
            self.compiles += 1

    def remember_plan(self, key: Any, plan: Any) -> None:
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > _PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)

    def memo(self, key: Any) -> Any:
        return self._memo.get(key)

    def remember(self, key: Any, value: Any) -> None:
        self._memo[key] = value

    # -- catalog and validation -----------------------------------------------------

    def catalog(self) -> dict[str, Any]:
        from quarry.semantic.catalog import build_catalog

        return build_catalog(self)

    def validate(
        self, databases: Collection[str] | None = None, *, file_rules: bool = True
    ) -> list[SemanticProblem]:
        """Every compile-time problem; ``databases`` are config.yml's names, if known.

        ``file_rules=False`` keeps only the problems that need several files (the
        Factory reports single-file rules while parsing each file).
        """
        from quarry.semantic.validate import validate_model

        found = validate_model(self, databases, file_rules=file_rules)
        return sorted({*self._build_problems, *found})


def _param_token(views: Mapping[str, ViewConfig]) -> str:
    """A value-marker token that no definition of this model contains.

    Derived from the definitions, so every replica compiles the same revision to
    the same text, and unguessable from outside them in practice.
    """
    texts = [view.model_dump_json() for view in views.values()]
    seed = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    for attempt in range(1000):
        token = f"__qp{hashlib.sha256(f'{seed}{attempt}'.encode()).hexdigest()[:8]}__"
        if not any(token in text for text in texts):
            return token
    raise SemanticError("no parameter marker fits this semantic model")  # pragma: no cover


def member_kind(dimension: Dimension) -> MemberKind:
    return "time" if dimension.type in ("date", "datetime") else "dimension"


def _index_members(view: ViewConfig, index: _Index) -> None:
    for i, dim in enumerate(view.dimensions):
        name = f"{view.name}.{dim.name}"
        if name in index.members:
            continue  # reported by validate as a duplicate
        index.members[name] = Member(view.name, dim.name, member_kind(dim), dim.type, dim, i)
    for i, measure in enumerate(view.measures or []):
        name = f"{view.name}.{measure.name}"
        if name in index.members:
            continue
        index.members[name] = Member(view.name, measure.name, "measure", measure.type, measure, i)


def entity_keys(keys: str | None, many: list[str] | None) -> tuple[str, ...]:
    if many:
        return tuple(many)
    return (keys,) if keys else ()


def _index_edges(views: Mapping[str, ViewConfig], index: _Index) -> None:
    """Which views hold each entity, primary or foreign side (edges come from it)."""
    for view in views.values():
        for entity in view.entities:
            keys = entity_keys(entity.key, entity.keys)
            side = index.primaries if entity.type == "primary" else index.foreigns
            side.setdefault(entity.name, []).append((view.name, keys))


def _edges_of(
    view: ViewConfig | None, primaries: _Sides, foreigns: _Sides, order: Mapping[str, int]
) -> list[Edge]:
    """The joins from ``view``: to the primary side of each of its foreign entities
    (many to one), from each of its primary entities to their foreign sides (one to
    many, fans out) and to other primaries of the same entity (one to one). Ordered
    by entity (as first declared primary), then owner, as join planning expects."""
    if view is None:
        return []
    name_of = view.name
    edges: list[Edge] = []
    names = sorted({e.name for e in view.entities if e.name in order}, key=order.__getitem__)
    for name in names:
        owners = primaries[name]
        for p_view, p_keys in owners:
            if p_view == name_of:
                for f_view, f_keys in foreigns.get(name, []):
                    if f_view != name_of:
                        edges.append(Edge(name_of, f_view, name, p_keys, f_keys, fans_out=True))
                for other, o_keys in owners:
                    if other != name_of:  # two primaries of one entity: one to one
                        edges.append(Edge(name_of, other, name, p_keys, o_keys, fans_out=False))
            else:
                for f_view, f_keys in foreigns.get(name, []):
                    if f_view == name_of:
                        edges.append(Edge(name_of, p_view, name, f_keys, p_keys, fans_out=False))
    return edges


def count_join_paths(
    model: SemanticModel,
    source: str,
    allowed: Collection[str] | None,
    *,
    until: str | None = None,
) -> tuple[dict[str, int], dict[str, int], dict[str, Edge]]:
    """Breadth-first over the join edges from ``source`` (within ``allowed``): each
    reached view's depth, its number of shortest paths, and the edge it was first
    reached by. Stops after the level that reaches ``until``; with none, reaches all.
    Serves both join planning and validation's search for tied paths."""
    depth = {source: 0}
    ways = {source: 1}
    parent: dict[str, Edge] = {}
    frontier = [source]
    while frontier and (until is None or until not in depth):
        following: list[str] = []
        for view in frontier:
            for edge in model.edges_from(view):
                nxt = edge.target
                if allowed is not None and nxt not in allowed:
                    continue
                if nxt not in depth:
                    depth[nxt] = depth[view] + 1
                    ways[nxt] = ways[view]
                    parent[nxt] = edge
                    following.append(nxt)
                elif depth[nxt] == depth[view] + 1:
                    ways[nxt] += ways[view]
        frontier = following
    return depth, ways, parent


def _shortest_path(
    model: SemanticModel, source: str, target: str, allowed: Collection[str] | None
) -> JoinPath | SemanticError:
    """Breadth-first search counting shortest paths, so a tie is reported, not guessed."""
    if source == target:
        return JoinPath(())
    depth, ways, parent = count_join_paths(model, source, allowed, until=target)
    if target not in depth:
        return SemanticError(
            f"view '{target}' cannot be joined to view '{source}': no shared entity "
            "links them" + (" within the topic" if allowed is not None else ""),
            view=target,
        )
    if ways[target] > 1:
        routes = _describe_routes(model, source, target, depth, allowed)
        return SemanticError(
            f"ambiguous join path from view '{source}' to view '{target}': {routes}; "
            "narrow the topic's views so only one path remains",
            view=target,
        )
    edges = []
    at = target
    while at != source:
        edge = parent[at]
        edges.append(edge)
        at = edge.source
    return JoinPath(tuple(reversed(edges)))


def _all_shortest(
    model: SemanticModel, source: str, target: str, allowed: Collection[str] | None
) -> list[tuple[Edge, ...]]:
    """Every shortest path (at most 16) from ``source`` to ``target``."""
    depth = {source: 0}
    frontier = [source]
    while frontier and target not in depth:
        following = []
        for view in frontier:
            for edge in model.edges_from(view):
                if (allowed is None or edge.target in allowed) and edge.target not in depth:
                    depth[edge.target] = depth[view] + 1
                    following.append(edge.target)
        frontier = following
    paths: list[tuple[Edge, ...]] = []

    def walk(at: str, trail: tuple[Edge, ...]) -> None:
        if len(paths) >= 16:
            return
        if at == target:
            paths.append(trail)
            return
        for edge in model.edges_from(at):
            if (allowed is None or edge.target in allowed) and depth.get(edge.target) == depth[
                at
            ] + 1:
                walk(edge.target, (*trail, edge))

    if target in depth:
        walk(source, ())
    return paths


def _describe_routes(
    model: SemanticModel,
    source: str,
    target: str,
    depth: Mapping[str, int],
    allowed: Collection[str] | None,
) -> str:
    routes: list[str] = []

    def walk(at: str, trail: list[str]) -> None:
        if len(routes) >= 3:
            return
        if at == target:
            routes.append(" -> ".join(trail))
            return
        for edge in model.edges_from(at):
            if allowed is not None and edge.target not in allowed:
                continue
            if depth.get(edge.target) == depth[at] + 1:
                walk(edge.target, [*trail, f"{edge.target} (via {edge.entity})"])

    walk(source, [source])
    return " or ".join(routes)
