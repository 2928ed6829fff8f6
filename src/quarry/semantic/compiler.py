"""Semantic query -> SQL with bound values, fan-out-safe by construction.

How the numbers stay right
--------------------------
Every measure is aggregated at its own view's grain before anything else is
joined to it, one subquery per view that has requested measures:

1. From the measure's view ``V``, the views holding the requested dimensions and
   the filtered fields are joined along their (unique, shortest) entity paths.
2. If none of those joins goes from a primary entity to a foreign one (nothing can
   repeat a row of ``V``), the subquery simply groups by the dimensions.
3. Otherwise a row of ``V`` may meet many rows on the far side. The subquery
   first takes the DISTINCT (dimension values, primary key of ``V``) pairs, then
   joins ``V`` back on its primary key and aggregates: each row of ``V`` counts
   exactly once per group, whatever fanned out. ``sum``, ``count``, ``average``,
   ``median``, ``count_distinct`` and custom expressions are then all correct.
   A view without a primary entity cannot be aggregated across such a join, and
   the query is refused with the reason instead of being answered wrongly.
4. Measures of several views are combined by UNION ALL of the per-view results
   (each one row per dimension group) and a final GROUP BY over the dimensions:
   no join between aggregates, so NULL dimension values group together too.

airlayer 0.4.0 instead joins all views flat from the view with the many side
and aggregates once, which repeats the one side's values (see
docs/semantic-layer.md for the worked example).

Filter values, row-filter values and ``{{variables.x}}`` are never written into
the text: each is a marker ``{token}{i}{token}`` with the value in ``params``,
the shape of :class:`quarry.runtime.connectors.base.BoundSql`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlglot import exp

from quarry.definitions.models.semantic import Measure, TopicConfig, TopicFilter, ViewConfig
from quarry.semantic import dialects
from quarry.semantic.dates import NotADate, parse_date_value
from quarry.semantic.errors import SemanticError
from quarry.semantic.expressions import (
    parse_fragment,
    parse_query,
    qualify,
    table_source,
)
from quarry.semantic.model import Edge, Member, RowFilter, SemanticModel
from quarry.semantic.query import Filter, FilterGroup, FilterItem, SemanticQuery

_DATE_OPS = (
    "in_date_range",
    "not_in_date_range",
    "before_date",
    "before_or_on_date",
    "after_date",
    "after_or_on_date",
)
_LIKE_OPS = (
    "contains",
    "not_contains",
    "starts_with",
    "not_starts_with",
    "ends_with",
    "not_ends_with",
)
_LIKE_ESCAPE = "!"


@dataclass(frozen=True)
class OutputColumn:
    """One result column: ``name`` as Oxy/airlayer name it (``orders__revenue``)."""

    name: str
    member: str
    kind: str  # "dimension" | "time_dimension" | "measure" | "motif"
    type: str
    granularity: str | None = None


@dataclass(frozen=True)
class CompiledQuery:
    """SQL text with value markers, the values, and what each column is.

    ``text``/``params``/``token`` are exactly :class:`BoundSql`'s fields, so
    ``BoundSql(text=q.text, params=q.params, token=q.token)`` runs on any connector.
    """

    text: str
    params: tuple[Any, ...]
    token: str
    columns: list[OutputColumn]
    datasource: str | None
    dialect: str

    def display(self) -> str:
        """The SQL with ``$1``-style placeholders, for logs and ``--sql``."""
        text = self.text
        for i in range(len(self.params)):
            text = text.replace(f"{self.token}{i}{self.token}", f"${i + 1}")
        return text


def compile_query(
    model: SemanticModel,
    query: SemanticQuery,
    *,
    dialect: str,
    row_filters: Sequence[RowFilter] = (),
    today: date | None = None,
) -> CompiledQuery:
    """Compile ``query``; the plan is cached per (model, query shape, dialect, row filters).

    The shape is the query without its values (see :func:`_lift`): a new filter
    value, variable or date reuses the plan and only the parameters are computed
    again, from the query's values and ``today`` (so "7 days ago" is resolved on
    the day the query is bound, not the day its plan was made). A value that the
    member cannot take is refused at bind time as at compile time.
    """
    today = today or date.today()
    name = dialects.normalize_dialect(dialect)
    lifted, raw_values, shape = _lift(query, today)
    key = (shape, name, _hashable(row_filters))
    plan = model.cached_plan(key)
    if plan is None:
        compiler = _Compiler(model, lifted, name, tuple(row_filters), today)
        compiled = compiler.compile()
        plan = _Plan(compiled, tuple(compiler.binder.recipes))
        model.count_compile()
        model.remember_plan(key, plan)
        return compiled
    assert isinstance(plan, _Plan)
    return plan.bound(raw_values, today)


_Make = Callable[[Any, date], Any]
# (index of the query's value or None, the model's own value, how to make the param)
_Recipe = tuple[int | None, Any, _Make | None]


class _Slot:
    """One value of the query, lifted out of its shape; ``tag`` is the part of the
    value the SQL text depends on (a date alone or a moment: see :func:`_tag`).
    Not a dataclass: the shape's JSON must show only the tag (the ``fallback``)."""

    __slots__ = ("index", "tag", "value")

    def __init__(self, index: int, value: Any, tag: str) -> None:
        self.index = index
        self.value = value
        self.tag = tag


@dataclass(frozen=True)
class _Plan:
    """A compiled shape: the SQL of its first query and how to bind any other."""

    first: CompiledQuery
    recipes: tuple[_Recipe, ...]

    def bound(self, raw_values: Sequence[Any], today: date) -> CompiledQuery:
        params = []
        for index, constant, make in self.recipes:
            raw = raw_values[index] if index is not None else constant
            params.append(make(raw, today) if make is not None else raw)
        first = self.first
        return CompiledQuery(
            text=first.text,
            params=tuple(params),
            token=first.token,
            columns=first.columns,
            datasource=first.datasource,
            dialect=first.dialect,
        )


def _tag(value: Any, today: date) -> str:
    """What of ``value`` shapes the SQL: a whole day on a datetime dimension becomes
    a range, a moment a comparison, so date-only and date-time values differ."""
    if isinstance(value, (bool, int, float, Decimal)):
        return "v"
    if isinstance(value, datetime):
        return "t"
    if isinstance(value, date):
        return "d"
    if isinstance(value, str):
        try:
            parsed = parse_date_value(value, today)
        except NotADate:
            return "v"
        return "t" if isinstance(parsed, datetime) else "d"
    return type(value).__name__


def _lift(query: SemanticQuery, today: date) -> tuple[SemanticQuery, list[Any], str]:
    """``query`` with each value replaced by a :class:`_Slot`, the values, the shape.

    Values are filter values (nested groups too), date ranges and variables. What
    stays in the shape: members, operators, granularities, orders, segments, the
    motif and its parameters, limit and offset (SQL literals, as not every dialect
    binds them), the number of values of an IN list, and which values are null.
    """
    raw: list[Any] = []

    def slot(value: Any) -> Any:
        if value is None:
            return None
        raw.append(value)
        return _Slot(len(raw) - 1, value, _tag(value, today))

    def item(given: FilterItem) -> FilterItem:
        if isinstance(given, FilterGroup):
            return given.model_copy(
                update={
                    "and_": None if given.and_ is None else tuple(item(f) for f in given.and_),
                    "or_": None if given.or_ is None else tuple(item(f) for f in given.or_),
                }
            )
        return given.model_copy(
            update={
                "value": slot(given.value),
                "values": None if given.values is None else tuple(slot(v) for v in given.values),
                "from_": slot(given.from_),
                "to": slot(given.to),
            }
        )

    update: dict[str, Any] = {}
    if query.filters:
        update["filters"] = tuple(item(f) for f in query.filters)
    if any(td.date_range is not None for td in query.time_dimensions):
        update["time_dimensions"] = tuple(
            td
            if td.date_range is None
            else td.model_copy(
                update={"date_range": (slot(td.date_range[0]), slot(td.date_range[1]))}
            )
            for td in query.time_dimensions
        )
    if query.variables:
        update["variables"] = {k: slot(v) for k, v in sorted(query.variables.items())}
    if not update:
        return query, raw, query.cache_key()
    lifted = query.model_copy(update=update)
    shape = lifted.model_dump_json(
        by_alias=True,
        exclude_defaults=True,
        fallback=lambda v: f"\x00{v.tag}" if isinstance(v, _Slot) else repr(v),
    )
    return lifted, raw, shape


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, _Slot) else value


def _coerced(member: Member, op: str, how: str = "value") -> _Make:
    """How a raw value becomes ``member``'s parameter: coerced, and for a whole day
    on a datetime dimension its first moment (``start``) or the next day's."""

    def make(raw: Any, today: date) -> Any:
        value = _coerce_value(member, raw, op, today)
        if how == "value" or not _date_only(value):
            return value
        start = _as_datetime(value)
        return start if how == "start" else start + timedelta(days=1)

    return make


def _like_pattern(member: Member, op: str, mark: str) -> _Make:
    def make(raw: Any, today: date) -> Any:
        text = str(_coerce_value(member, raw, op, today))
        escaped = text.replace(mark, mark * 2).replace("%", mark + "%").replace("_", mark + "_")
        return {
            "contains": f"%{escaped}%",
            "starts_with": f"{escaped}%",
            "ends_with": f"%{escaped}",
        }[op.removeprefix("not_")]

    return make


def _variable_value(name: str) -> _Make:
    def make(raw: Any, today: date) -> Any:
        if not isinstance(raw, (str, int, float, bool, Decimal, date)):
            raise SemanticError(f"variable '{name}' must be a single value", variable=name)
        return raw

    return make


def _hashable(row_filters: Sequence[RowFilter]) -> Any:
    try:
        key = tuple(row_filters)
        hash(key)
        return key
    except TypeError:
        return repr(tuple(row_filters))


# -- the compiler ------------------------------------------------------------------


@dataclass
class _Selected:
    alias: str
    member: Member
    granularity: str | None = None


@dataclass
class _Condition:
    """A compiled WHERE condition and the views it needs joined."""

    tree: exp.Expr
    views: frozenset[str]


@dataclass
class _Binder:
    """Parameters in order, and for each the recipe that binds it again for another
    query of the same shape (:class:`_Plan`)."""

    token: str
    today: date
    values: list[Any] = field(default_factory=list)
    recipes: list[_Recipe] = field(default_factory=list)

    def bind(self, value: Any) -> exp.Expr:
        """A value of the model or of the shape itself: the same in every binding."""
        return self._add(value, (None, value, None))

    def bind_from(self, raw: Any, make: _Make) -> exp.Expr:
        """``make(raw)``, where ``raw`` may be a value of the query (a :class:`_Slot`)."""
        if isinstance(raw, _Slot):
            return self._add(make(raw.value, self.today), (raw.index, None, make))
        return self._add(make(raw, self.today), (None, raw, make))

    def _add(self, value: Any, recipe: _Recipe) -> exp.Expr:
        self.values.append(value)
        self.recipes.append(recipe)
        return exp.var(f"{self.token}{len(self.values) - 1}{self.token}")


class _Compiler:
    def __init__(
        self,
        model: SemanticModel,
        query: SemanticQuery,
        dialect: str,
        row_filters: tuple[RowFilter, ...],
        today: date,
    ) -> None:
        self.model = model
        self.query = query
        self.dialect = dialect
        self.row_filters = row_filters
        self.today = today
        self.binder = _Binder(model.param_token, today)
        self.topic: TopicConfig | None = model.topic(query.topic) if query.topic else None
        self.allowed: frozenset[str] | None = (
            frozenset(self.topic.views) if self.topic is not None else None
        )
        self.variables = dict(query.variables or {})
        hints = set(query.through)
        if self.topic is not None and self.topic.base_view:
            hints.add(self.topic.base_view)
        self.through = frozenset(hints)
        self.filtered_measures: dict[str, Member] = {}
        self.timezone = _time_zone(query.timezone)

    # -- entry ------------------------------------------------------------------

    def compile(self) -> CompiledQuery:
        groups = self._selected_dimensions()
        measures = self._selected_measures()
        if not groups and not measures:
            raise SemanticError(
                "the query selects nothing: a time dimension without a granularity only "
                "filters; add a granularity, a dimension or a measure"
            )
        where, having = self._conditions()
        columns = [
            OutputColumn(
                s.alias,
                s.member.qualified,
                "time_dimension" if s.granularity else "dimension",
                s.member.type,
                s.granularity,
            )
            for s in groups
        ] + [OutputColumn(s.alias, s.member.qualified, "measure", "number") for s in measures]
        # A measure filtered on but not asked for is computed, filtered on, not shown.
        shown = {m.member.qualified for m in measures}
        hidden = [
            _Selected(q.replace(".", "__"), member)
            for q, member in self.filtered_measures.items()
            if q not in shown
        ]
        if self.query.ungrouped:
            from quarry.semantic.ungrouped import ungrouped_select

            rows = ungrouped_select(self, groups, measures, where, having)
            final = self.order_and_limit(rows, groups, measures)
        else:
            combined = self._combined(groups, [*measures, *hidden], where)
            if any(_rolling(m.member) for m in [*measures, *hidden]):
                from quarry.semantic.rolling import rolled

                combined = rolled(combined, groups, [*measures, *hidden])
            final = self._finish(combined, groups, measures, having)
        if self.query.motif:
            from quarry.semantic.motifs import apply_motif

            final, extra = apply_motif(self, final, groups, measures)
            columns = columns + extra
        text = final.sql(dialect=self.dialect, copy=False)  # the tree is ours alone
        token = self.binder.token
        marker = re.compile(re.escape(token) + r"(\d+)" + re.escape(token))
        if token in marker.sub("", text) or any(
            int(i) >= len(self.binder.values) for i in marker.findall(text)
        ):  # a definition spelled the marker (the token is random per model: unlikely)
            raise SemanticError("the semantic layer's SQL contains the parameter marker text")
        return CompiledQuery(
            text=text,
            params=tuple(self.binder.values),
            token=token,
            columns=columns,
            datasource=self._datasource(groups, measures),
            dialect=self.dialect,
        )

    # -- members ----------------------------------------------------------------

    def qualified(self, name: str) -> str:
        """Oxy's rule: a name without a dot is qualified with the topic's name."""
        if "." in name or self.topic is None:
            return name
        return f"{self.topic.name}.{name}"

    def member(self, name: str) -> Member:
        return self.model.member(self.qualified(name), topic=self.topic)

    def _selected_members(self, names: Sequence[str], *, measures: bool) -> list[_Selected]:
        """The query's plain dimensions or measures, each once, refusing one listed
        under the other kind."""
        selected: list[_Selected] = []
        seen: set[str] = set()
        for name in names:
            member = self.member(name)
            if member.is_measure != measures:
                kind = "measure" if member.is_measure else "dimension"
                raise SemanticError(
                    f"'{member.qualified}' is a {kind}; list it under {kind}s",
                    member=member.qualified,
                )
            alias = member.qualified.replace(".", "__")
            if alias not in seen:
                seen.add(alias)
                selected.append(_Selected(alias, member))
        return selected

    def _selected_dimensions(self) -> list[_Selected]:
        selected = self._selected_members(self.query.dimensions, measures=False)
        seen = {s.alias for s in selected}
        for td in self.query.time_dimensions:
            member = self.member(td.dimension)
            if member.kind != "time":
                raise SemanticError(
                    f"time dimension '{member.qualified}' is a {member.type} "
                    f"{'measure' if member.is_measure else 'dimension'}, not a date or "
                    "datetime dimension",
                    member=member.qualified,
                )
            if td.granularity is None:
                continue  # filter-only (its date_range), as in airlayer
            alias = f"{member.qualified}.{td.granularity}".replace(".", "__")
            if alias not in seen:
                seen.add(alias)
                selected.append(_Selected(alias, member, td.granularity))
        return selected

    def _selected_measures(self) -> list[_Selected]:
        return self._selected_members(self.query.measures, measures=True)

    def _datasource(self, groups: list[_Selected], measures: list[_Selected]) -> str | None:
        views = [s.member.view for s in [*measures, *groups]]
        if self.topic is not None:
            views += list(self.topic.views)
        for name in views:
            view = self.model.views.get(name)
            if view is not None and view.datasource:
                return view.datasource
        return None

    # -- expressions ------------------------------------------------------------

    def view(self, name: str) -> ViewConfig:
        return self.model.views[name]

    def _parsed(self, text: str, where: str) -> exp.Expr:
        key = ("fragment", self.dialect, text)
        tree = self.model.memo(key)
        if tree is None:
            try:
                tree = parse_fragment(text, self.dialect, where)
            except SemanticError as exc:
                tree = exc
            self.model.remember(key, tree)
        if isinstance(tree, SemanticError):
            raise SemanticError(f"{where}: {tree.message.split(': ', 1)[-1]}")
        assert isinstance(tree, exp.Expr)
        return tree

    def variable(self, name: str) -> exp.Expr:
        if name not in self.variables:
            raise SemanticError(
                f"variable '{name}' is used by the semantic layer but the query gives no "
                "value for it",
                variable=name,
            )
        return self.binder.bind_from(self.variables[name], _variable_value(name))

    def dimension_sql(self, member: Member) -> exp.Expr:
        """The dimension's expression; a datetime one as wall-clock time in the query's
        ``timezone`` when it has one (grouping and filtering alike, so a day boundary
        is the same local midnight for both)."""
        tree = self._dimension_tree(member)
        if self.timezone is not None and member.type == "datetime":
            return dialects.to_timezone(tree, self.timezone, self.dialect)
        return tree

    def _dimension_tree(self, member: Member) -> exp.Expr:
        definition = member.definition
        text = definition.expr or ""
        if "variables" in text:  # binds a value per use: never shared
            tree = self._parsed(text, f"dimension '{member.qualified}' expr")
            return qualify(tree, member.view, variable=self.variable)
        # Qualified once per model and dialect (a query uses a key or dimension in
        # several subqueries, and queries share them): a copy is cheaper than a qualify.
        key = ("dimension", self.dialect, member.qualified)
        done = self.model.memo(key)
        if done is None:
            tree = self._parsed(text, f"dimension '{member.qualified}' expr")
            done = qualify(tree, member.view, variable=self.variable)
            self.model.remember(key, done)
        assert isinstance(done, exp.Expr)
        return done.copy()

    def time_sql(self, member: Member, granularity: str) -> exp.Expr:
        value = self.dimension_sql(member)
        local = self.timezone is not None and member.type == "datetime"
        return dialects.truncate(
            value, granularity, self.dialect, is_date=member.type == "date", local=local
        )

    def measure_sql(self, member: Member, stack: tuple[str, ...] = ()) -> exp.Expr:
        measure = member.definition
        assert isinstance(measure, Measure)
        if member.qualified in stack:
            raise SemanticError(
                f"measure '{member.qualified}' refers to itself through " + " -> ".join(stack),
                member=member.qualified,
            )

        def reference(view: str, name: str) -> exp.Expr:
            target = self.model.members.get(f"{view}.{name}")
            if target is None or not target.is_measure:
                raise SemanticError(
                    f"measure '{member.qualified}' refers to '{view}.{name}', which is not "
                    "a measure",
                    member=member.qualified,
                )
            if target.view != member.view:
                raise SemanticError(
                    f"measure '{member.qualified}' refers to '{view}.{name}' of another "
                    "view; combine measures of different views in the query instead",
                    member=member.qualified,
                )
            return self.measure_sql(target, (*stack, member.qualified))

        where = f"measure '{member.qualified}' expr"
        kind = measure.type
        value: exp.Expr | None = None
        if measure.expr:
            value = qualify(
                self._parsed(measure.expr, where),
                member.view,
                variable=self.variable,
                reference=reference,
            )
        if kind in ("number", "custom"):
            if value is None:
                raise SemanticError(
                    f"{where}: a {kind} measure needs an expr", member=member.qualified
                )
            return value
        conditions = [
            qualify(
                self._parsed(f.expr, f"measure '{member.qualified}' filter"),
                member.view,
                variable=self.variable,
            )
            for f in measure.filters or []
        ]
        if conditions:
            cond = exp.and_(*conditions) if len(conditions) > 1 else conditions[0]
            value = exp.Case(
                ifs=[exp.If(this=cond, true=value if value is not None else exp.Literal.number(1))]
            )
        if kind == "count":
            return exp.Count(this=value if value is not None else exp.Star())
        if value is None:
            raise SemanticError(f"{where}: a {kind} measure needs an expr", member=member.qualified)
        if kind == "sum":
            return exp.Sum(this=value)
        if kind in ("average", "avg"):
            return exp.Avg(this=value)
        if kind == "min":
            return exp.Min(this=value)
        if kind == "max":
            return exp.Max(this=value)
        if kind == "count_distinct":
            return exp.Count(this=exp.Distinct(expressions=[value]))
        if kind == "count_distinct_approx":
            return dialects.approx_count_distinct(value, self.dialect)
        if kind == "median":
            return dialects.median(value, self.dialect, member.qualified)
        raise SemanticError(f"measure '{member.qualified}' has unknown type '{kind}'")

    def source(self, view_name: str) -> exp.Expr:
        view = self.view(view_name)
        alias = exp.TableAlias(this=exp.to_identifier(view_name, quoted=True))
        if view.sql:
            key = ("query", self.dialect, view.sql)
            tree = self.model.memo(key)
            if tree is None:
                tree = parse_query(view.sql, self.dialect, f"view '{view_name}' sql")
                self.model.remember(key, tree)
            inner = (
                qualify(tree, view_name, variable=self.variable, columns=False)
                if "{{" in view.sql
                else tree.copy()
            )
            return exp.Subquery(this=inner, alias=alias)
        if not view.table:
            raise SemanticError(f"view '{view_name}' has neither table nor sql", view=view_name)
        key = ("table", self.dialect, view.table)
        parsed = self.model.memo(key)
        if parsed is None:
            parsed = table_source(view.table, self.dialect)
            self.model.remember(key, parsed)
        assert isinstance(parsed, exp.Expr)
        table = parsed.copy()
        table.set("alias", alias)
        return table

    # -- filters ----------------------------------------------------------------

    def _conditions(self) -> tuple[list[_Condition], list[exp.Expr]]:
        where: list[_Condition] = []
        having: list[exp.Expr] = []
        for item in self._default_filters():
            cond, is_measure = self._filter(item)
            if is_measure:
                raise SemanticError("a topic default filter cannot filter a measure")
            where.append(cond)
        for given in self.query.filters:
            cond, is_measure = self._filter(given)
            if is_measure:
                having.append(cond.tree)
            else:
                where.append(cond)
        for td in self.query.time_dimensions:
            if td.date_range is not None:
                leaf = Filter(
                    field=td.dimension,
                    op="in_date_range",
                    **{"from": td.date_range[0]},
                    to=td.date_range[1],
                )
                where.append(self._filter(leaf)[0])
        for segment in self.query.segments:
            where.append(self._segment(segment))
        # Row filters last, each its own conjunct: nothing in the query can widen them.
        read = self._views_read(where)
        for rule in self.row_filters:
            if not rule.protects or rule.protects & read:
                where.append(self._row_filter(rule))
        return where, having

    def _views_read(self, where: list[_Condition]) -> frozenset[str]:
        """Every view the query reads: its members', its filters' and segments'."""
        names = [*self.query.measures, *self.query.dimensions]
        names += [td.dimension for td in self.query.time_dimensions]
        views = {self.member(name).view for name in names}
        views |= {m.view for m in self.filtered_measures.values()}
        for cond in where:
            views |= cond.views
        return frozenset(views)

    def _default_filters(self) -> list[Filter]:
        if self.topic is None or not self.topic.default_filters:
            return []
        return [_from_topic_filter(f) for f in self.topic.default_filters]

    def _segment(self, name: str) -> _Condition:
        view_name, _, seg_name = self.qualified(name).partition(".")
        view = self.model.views.get(view_name)
        segment = next((s for s in (view.segments if view else []) if s.name == seg_name), None)
        if view is None or segment is None:
            raise SemanticError(f"unknown segment '{name}'", segment=name)
        if self.allowed is not None and view_name not in self.allowed:
            raise SemanticError(f"segment '{name}' is outside topic '{self.query.topic}'")
        tree = qualify(
            self._parsed(segment.expr, f"segment '{name}'"), view_name, variable=self.variable
        )
        return _Condition(tree, frozenset({view_name}))

    def _row_filter(self, rule: RowFilter) -> _Condition:
        member = self.model.members.get(rule.member)
        if member is None or member.is_measure:
            raise SemanticError(
                f"row filter names '{rule.member}', which is not a dimension of the model",
                member=rule.member,
            )
        target = self.dimension_sql(member)
        if not rule.values:
            tree: exp.Expr = exp.EQ(this=exp.Literal.number(1), expression=exp.Literal.number(0))
        else:
            bound = [self.binder.bind_from(v, _coerced(member, "eq")) for v in rule.values]
            tree = (
                exp.In(this=target, expressions=bound)
                if len(bound) > 1
                else exp.EQ(this=target, expression=bound[0])
            )
        return _Condition(exp.Paren(this=tree), frozenset({member.view}))

    def _filter(self, item: FilterItem) -> tuple[_Condition, bool]:
        if isinstance(item, FilterGroup):
            parts = [self._filter(f) for f in (item.and_ or item.or_ or ())]
            if not parts:
                raise SemanticError("an empty and/or filter group")
            kinds = {is_measure for _, is_measure in parts}
            if len(kinds) > 1:
                raise SemanticError(
                    "a filter group mixes measures and dimensions; split it into separate filters"
                )
            trees = [c.tree for c, _ in parts]
            joined = exp.and_(*trees) if item.and_ is not None else exp.or_(*trees)
            views = frozenset().union(*(c.views for c, _ in parts))
            return _Condition(exp.Paren(this=joined), views), kinds.pop()
        member = self.member(item.field)
        if member.is_measure:
            return _Condition(self._measure_filter(item, member), frozenset()), True
        target = self.dimension_sql(member)
        return _Condition(
            exp.Paren(this=self._leaf(item, member, target)), frozenset({member.view})
        ), False

    def _measure_filter(self, item: Filter, member: Member) -> exp.Expr:
        self.filtered_measures[member.qualified] = member
        column = exp.column(member.qualified.replace(".", "__"), table="__q", quoted=True)
        if item.op in ("set", "not_set"):
            return (
                exp.Not(this=exp.Is(this=column, expression=exp.null()))
                if item.op == "set"
                else exp.Is(this=column, expression=exp.null())
            )
        if item.op not in ("eq", "neq", "gt", "gte", "lt", "lte", "in", "not_in"):
            raise SemanticError(
                f"filter on measure '{member.qualified}': operator '{item.op}' applies to "
                "dimensions only",
                member=member.qualified,
            )
        return self._compare(item, member, column)

    def _leaf(self, item: Filter, member: Member, target: exp.Expr) -> exp.Expr:
        op = item.op
        if op == "set":
            return exp.Not(this=exp.Is(this=target, expression=exp.null()))
        if op == "not_set":
            return exp.Is(this=target, expression=exp.null())
        if op in _LIKE_OPS:
            if member.type not in ("string", "geo"):
                raise SemanticError(
                    f"filter on '{member.qualified}': '{op}' needs a string dimension, "
                    f"not {member.type}",
                    member=member.qualified,
                )
            # BigQuery and ClickHouse have no ESCAPE clause: backslash is theirs.
            implicit = self.dialect in ("bigquery", "clickhouse")
            mark = "\\" if implicit else _LIKE_ESCAPE
            pattern = self.binder.bind_from(item.value, _like_pattern(member, op, mark))
            like: exp.Expr = exp.Like(this=target, expression=pattern)
            if not implicit:
                like = exp.Escape(this=like, expression=exp.Literal.string(_LIKE_ESCAPE))
            return exp.Not(this=like) if op.startswith("not_") else like
        if op in _DATE_OPS:
            if member.kind != "time":
                raise SemanticError(
                    f"filter on '{member.qualified}': '{op}' needs a date or datetime "
                    f"dimension, not {member.type}",
                    member=member.qualified,
                )
            if op in ("in_date_range", "not_in_date_range"):
                low = self._date_bound(member, item.from_, op, "from")
                high = self._date_bound(member, item.to, op, "to")
                inside = exp.and_(
                    exp.GTE(this=target.copy(), expression=low[0]),
                    (exp.LT if high[1] else exp.LTE)(this=target.copy(), expression=high[0]),
                )
                return exp.Not(this=exp.Paren(this=inside)) if op.startswith("not_") else inside
            mapped = {
                "before_date": "lt",
                "before_or_on_date": "lte",
                "after_date": "gt",
                "after_or_on_date": "gte",
            }[op]
            return self._compare(
                Filter(field=item.field, op=mapped, value=item.value),
                member,
                target,
            )
        return self._compare(item, member, target)

    def _date_bound(self, member: Member, value: Any, op: str, side: str) -> tuple[exp.Expr, bool]:
        """A bound for ``side`` of a range; ``True`` when it is an exclusive upper bound.

        A date-only ``to`` on a datetime dimension means the whole of that day, so it
        becomes ``< next day`` (airlayer compares ``<= 'YYYY-MM-DD'``, which drops
        every moment after midnight of the last day).
        """
        if value is None:
            raise SemanticError(
                f"filter on '{member.qualified}': {op} needs '{side}'", member=member.qualified
            )
        parsed = self._coerce(member, _unwrap(value), op)
        if side == "to" and member.type == "datetime" and _date_only(parsed):
            return self.binder.bind_from(value, _coerced(member, op, "next_day")), True
        return self.binder.bind_from(value, _coerced(member, op)), False

    def _compare(self, item: Filter, member: Member, target: exp.Expr) -> exp.Expr:
        op = item.op
        if op in ("in", "not_in"):
            if not item.values:
                raise SemanticError(
                    f"filter on '{member.qualified}': '{op}' needs a non-empty values list",
                    member=member.qualified,
                )
            bound = [self.binder.bind_from(v, _coerced(member, op)) for v in item.values]
            inside = exp.In(this=target, expressions=bound)
            return exp.Not(this=inside) if op == "not_in" else inside
        if item.value is None:
            raise SemanticError(
                f"filter on '{member.qualified}': '{op}' needs a value (use set/not_set "
                "to test for null)",
                member=member.qualified,
            )
        raw = item.value
        value = self._coerce(member, _unwrap(raw), op)
        how = "value"
        if member.type == "datetime" and _date_only(value):
            # A whole day on a datetime column: [day, next day).
            start = _coerced(member, op, "start")
            end = _coerced(member, op, "next_day")
            if op == "eq":
                return exp.and_(
                    exp.GTE(this=target.copy(), expression=self.binder.bind_from(raw, start)),
                    exp.LT(this=target.copy(), expression=self.binder.bind_from(raw, end)),
                )
            if op == "neq":
                return exp.or_(
                    exp.LT(this=target.copy(), expression=self.binder.bind_from(raw, start)),
                    exp.GTE(this=target.copy(), expression=self.binder.bind_from(raw, end)),
                )
            if op == "lte":
                return exp.LT(this=target, expression=self.binder.bind_from(raw, end))
            if op == "gt":
                return exp.GTE(this=target, expression=self.binder.bind_from(raw, end))
            how = "start"
        node = {
            "eq": exp.EQ,
            "neq": exp.NEQ,
            "gt": exp.GT,
            "gte": exp.GTE,
            "lt": exp.LT,
            "lte": exp.LTE,
        }.get(op)
        if node is None:
            raise SemanticError(
                f"filter on '{member.qualified}': unknown operator '{op}'", member=member.qualified
            )
        return node(this=target, expression=self.binder.bind_from(raw, _coerced(member, op, how)))

    def _coerce(self, member: Member, value: Any, op: str) -> Any:
        return _coerce_value(member, value, op, self.today)

    # -- plan -------------------------------------------------------------------

    def _tree(self, root: str, needed: set[str]) -> list[Edge]:
        """Edges joining ``needed`` views to ``root``, each view once, in join order."""
        edges: list[Edge] = []
        joined = {root}
        for target in sorted(needed - {root}):
            path = self.model.join_path(root, target, self.allowed, self.through)
            for edge in path.edges:
                if edge.target not in joined:
                    joined.add(edge.target)
                    edges.append(edge)
        return edges

    def _joined(self, select: exp.Select, edges: list[Edge]) -> exp.Select:
        for edge in edges:
            on = (
                exp.and_(
                    *[
                        exp.EQ(this=self._key(edge.source, s), expression=self._key(edge.target, t))
                        for s, t in zip(edge.source_keys, edge.target_keys, strict=False)
                    ]
                )
                if edge.source_keys
                else None
            )
            if on is None or len(edge.source_keys) != len(edge.target_keys):
                raise SemanticError(
                    f"views '{edge.source}' and '{edge.target}' share entity "
                    f"'{edge.entity}' with different key counts",
                    view=edge.target,
                )
            select = _join(select, self.source(edge.target), on, side="LEFT")
        return select

    def _key(self, view_name: str, key: str) -> exp.Expr:
        member = self.model.members.get(f"{view_name}.{key}")
        if member is not None and not member.is_measure:
            return self._dimension_tree(member)  # join keys as stored, never converted
        return exp.column(key, table=exp.to_identifier(view_name, quoted=True))

    def _primary_keys(self, view_name: str) -> tuple[str, ...]:
        for entity in self.view(view_name).entities:
            if entity.type == "primary":
                keys = tuple(entity.keys or ([entity.key] if entity.key else []))
                if keys:
                    return keys
        return ()

    def _group_expr(self, selected: _Selected) -> exp.Expr:
        if selected.granularity:
            return self.time_sql(selected.member, selected.granularity)
        return self.dimension_sql(selected.member)

    def _needed(self, groups: list[_Selected], where: list[_Condition]) -> set[str]:
        needed = {s.member.view for s in groups}
        for cond in where:
            needed |= cond.views
        return needed

    def _where(self, select: exp.Select, where: list[_Condition]) -> exp.Select:
        if where:
            select = select.where(*[c.tree.copy() for c in where], copy=False)
        return select

    def _dimension_only(self, groups: list[_Selected], where: list[_Condition]) -> exp.Select:
        needed = self._needed(groups, where)
        root = groups[0].member.view
        if self.topic is not None and self.topic.base_view in needed:
            root = self.topic.base_view
        select = exp.select(
            *[exp.alias_(self._group_expr(s), s.alias, quoted=True) for s in groups]
        ).from_(self.source(root), copy=False)
        select = self._joined(select, self._tree(root, needed))
        select = self._where(select, where)
        return select.group_by(*[exp.Literal.number(i + 1) for i in range(len(groups))], copy=False)

    def _per_view(
        self,
        view_name: str,
        measures: list[_Selected],
        groups: list[_Selected],
        where: list[_Condition],
    ) -> exp.Select:
        needed = self._needed(groups, where) | {view_name}
        edges = self._tree(view_name, needed)
        positions = [exp.Literal.number(i + 1) for i in range(len(groups))]
        if not any(edge.fans_out for edge in edges):
            select = exp.select(
                *[exp.alias_(self._group_expr(s), s.alias, quoted=True) for s in groups],
                *[exp.alias_(self.measure_sql(m.member), m.alias, quoted=True) for m in measures],
            ).from_(self.source(view_name), copy=False)
            select = self._joined(select, edges)
            select = self._where(select, where)
            return select.group_by(*positions, copy=False) if groups else select
        keys = self._primary_keys(view_name)
        if not keys:
            far = next(e.target for e in edges if e.fans_out)
            raise SemanticError(
                f"measures of view '{view_name}' "
                f"({', '.join(m.member.qualified for m in measures)}) "
                f"cannot be aggregated by fields of '{far}': one '{view_name}' row meets many "
                f"'{far}' rows and view '{view_name}' has no primary entity to count each row "
                "once; declare one",
                view=view_name,
            )
        key_aliases = [f"__key{i}" for i in range(len(keys))]
        distinct = (
            exp.select(
                *[exp.alias_(self._group_expr(s), s.alias, quoted=True) for s in groups],
                *[
                    exp.alias_(self._key(view_name, k), a, quoted=True)
                    for k, a in zip(keys, key_aliases, strict=True)
                ],
            )
            .from_(self.source(view_name), copy=False)
            .distinct(copy=False)
        )
        distinct = self._joined(distinct, edges)
        distinct = self._where(distinct, where)
        grain = exp.Subquery(
            this=distinct, alias=exp.TableAlias(this=exp.to_identifier("__grain", quoted=True))
        )
        on = exp.and_(
            *[
                exp.EQ(
                    this=self._key(view_name, k),
                    expression=exp.column(a, table="__grain", quoted=True),
                )
                for k, a in zip(keys, key_aliases, strict=True)
            ]
        )
        select = (
            exp.select(
                *[
                    exp.alias_(
                        exp.column(s.alias, table="__grain", quoted=True), s.alias, quoted=True
                    )
                    for s in groups
                ],
                *[exp.alias_(self.measure_sql(m.member), m.alias, quoted=True) for m in measures],
            )
            .from_(grain, copy=False)
            .join(_join_node(self.source(view_name), on, kind="INNER"), copy=False)
        )
        return select.group_by(*positions, copy=False) if groups else select

    def _combined(
        self, groups: list[_Selected], measures: list[_Selected], where: list[_Condition]
    ) -> exp.Select:
        if not measures:
            return self._dimension_only(groups, where)
        by_view: dict[str, list[_Selected]] = {}
        for m in measures:
            by_view.setdefault(m.member.view, []).append(m)
        parts = {view: self._per_view(view, ms, groups, where) for view, ms in by_view.items()}
        if len(parts) == 1:
            return next(iter(parts.values()))
        return self._stitched(parts, by_view, groups, measures)

    def _stitched(
        self,
        parts: dict[str, exp.Select],
        by_view: dict[str, list[_Selected]],
        groups: list[_Selected],
        measures: list[_Selected],
    ) -> exp.Select:
        """Per-view results side by side: one row per dimension group, no join fan-out.

        Each per-view result is a CTE with one row per group. The groups of all of
        them (a UNION, so each appears once) are the spine the results are LEFT
        JOINed to, with NULL-safe key equality so a NULL group matches itself.
        """
        names = {view: f"__m{i}" for i, view in enumerate(parts)}
        owner = {m.alias: names[view] for view, ms in by_view.items() for m in ms}
        measure_columns = [
            exp.alias_(exp.column(m.alias, table=owner[m.alias], quoted=True), m.alias, quoted=True)
            for m in measures
        ]
        if not groups:
            select = exp.select(*measure_columns).from_(
                exp.to_identifier(names[next(iter(parts))], quoted=True), copy=False
            )
            for view in list(parts)[1:]:
                select = _join(
                    select, exp.to_identifier(names[view], quoted=True), None, kind="CROSS"
                )
        else:
            spine: exp.Query | None = None
            for name in names.values():
                branch = exp.select(
                    *[exp.column(s.alias, table=name, quoted=True) for s in groups]
                ).from_(exp.to_identifier(name, quoted=True), copy=False)
                spine = (
                    branch if spine is None else exp.union(spine, branch, distinct=True, copy=False)
                )
            assert spine is not None
            select = exp.select(
                *[exp.column(s.alias, table="__s", quoted=True) for s in groups], *measure_columns
            ).from_(
                exp.Subquery(
                    this=spine, alias=exp.TableAlias(this=exp.to_identifier("__s", quoted=True))
                ),
                copy=False,
            )
            for name in names.values():
                on = exp.and_(
                    *[
                        _null_safe_eq(
                            exp.column(s.alias, table="__s", quoted=True),
                            exp.column(s.alias, table=name, quoted=True),
                        )
                        for s in groups
                    ]
                )
                select = _join(select, exp.to_identifier(name, quoted=True), on, side="LEFT")
        for view, part in parts.items():
            select = select.with_(exp.to_identifier(names[view], quoted=True), as_=part, copy=False)
        return select

    def _finish(
        self,
        combined: exp.Select,
        groups: list[_Selected],
        measures: list[_Selected],
        having: list[exp.Expr],
    ) -> exp.Select:
        final = combined
        if having:
            final = exp.select(
                *[exp.column(s.alias, table="__q", quoted=True) for s in [*groups, *measures]]
            ).from_(
                exp.Subquery(
                    this=combined, alias=exp.TableAlias(this=exp.to_identifier("__q", quoted=True))
                ),
                copy=False,
            )
            final = final.where(*having, copy=False)
        if self.query.motif:
            return final  # the motif wrapper orders and limits the outer query
        return self.order_and_limit(final, groups, measures)

    def order_and_limit(
        self,
        select: exp.Select,
        groups: list[_Selected],
        measures: list[_Selected],
        extra: Sequence[str] = (),
        *,
        table: str | None = None,
    ) -> exp.Select:
        """ORDER BY (output columns), LIMIT and OFFSET of the outermost select.

        ``table`` qualifies the base columns (a motif's outer query joins its base
        twice, so a bare name could be ambiguous); motif outputs stay bare.
        """
        for order in self.query.orders:
            alias = self._order_alias(order.field, groups, measures, extra)
            qualifier = table if table is not None and alias not in extra else None
            select = select.order_by(
                exp.Ordered(
                    this=exp.column(alias, table=qualifier, quoted=True),
                    desc=order.direction == "desc",
                ),
                copy=False,
            )
        if self.query.limit is not None:
            select = select.limit(self.query.limit, copy=False)
        if self.query.offset:
            select = select.offset(self.query.offset, copy=False)
        return select

    def _order_alias(
        self, name: str, groups: list[_Selected], measures: list[_Selected], extra: Sequence[str]
    ) -> str:
        aliases = [s.alias for s in [*groups, *measures]] + list(extra)
        if name in aliases:
            return name
        qualified = self.qualified(name)
        for s in [*groups, *measures]:
            if s.member.qualified == qualified:
                return s.alias
        self.model.member(qualified, topic=self.topic)  # unknown member: say so
        raise SemanticError(
            f"order field '{name}' is not selected by the query; add it to measures, "
            "dimensions or time_dimensions",
            member=qualified,
        )


_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")


def _time_zone(name: str | None) -> str | None:
    """The query's IANA ``timezone`` (None for UTC or none), checked against the
    zone database: it is written into the SQL as a literal, so only real zone
    names pass."""
    if name is None or name.strip().upper() in ("", "UTC", "ETC/UTC", "Z"):
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        if not _ZONE_NAME.match(name):
            raise ValueError(name)
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise SemanticError(
            f"timezone '{name}' is not an IANA time zone name (such as 'America/New_York')",
            timezone=name,
        ) from None
    return name


def _rolling(member: Member) -> bool:
    definition = member.definition
    return isinstance(definition, Measure) and definition.rolling_window is not None


def _coerce_value(member: Member, value: Any, op: str, today: date) -> Any:
    """``value`` as the Python type the member's column compares with."""
    name = member.qualified
    if isinstance(value, (dict, list, tuple)) or value is None:
        raise SemanticError(
            f"filter on '{name}': expected a single value, got {value!r}", member=name
        )
    kind = "number" if member.is_measure else member.type
    if kind == "number":
        if isinstance(value, bool):
            raise SemanticError(
                f"filter on '{name}': expected a number, got {value!r}", member=name
            )
        if isinstance(value, (int, float, Decimal)):
            return value
        text = str(value).strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return (
                Decimal(text)
                if text.lower() not in ("nan", "inf", "-inf", "infinity")
                else _raise()
            )
        except Exception:
            raise SemanticError(
                f"filter on '{name}': expected a number, got {value!r}", member=name
            ) from None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        raise SemanticError(
            f"filter on '{name}': expected true or false, got {value!r}", member=name
        )
    if kind in ("date", "datetime"):
        try:
            parsed = parse_date_value(value, today)
        except NotADate as exc:
            raise SemanticError(f"filter on '{name}': {exc}", member=name) from None
        if kind == "date" and isinstance(parsed, datetime):
            return parsed.date()
        return parsed
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _join_node(
    source: exp.Expr, on: exp.Expr | None, *, side: str | None = None, kind: str | None = None
) -> exp.Join:
    """A JOIN node built directly: ``Select.join(join_type=...)`` parses the join
    type from text on every call (a third of a cold compile, profiled)."""
    node = exp.Join(this=source, on=on)
    if side:
        node.set("side", side)
    if kind:
        node.set("kind", kind)
    return node


def _join(
    select: exp.Select,
    source: exp.Expr,
    on: exp.Expr | None,
    *,
    side: str | None = None,
    kind: str | None = None,
) -> exp.Select:
    select.append("joins", _join_node(source, on, side=side, kind=kind))
    return select


def _null_safe_eq(left: exp.Expr, right: exp.Expr) -> exp.Expr:
    """``left = right``, where NULL equals NULL (spelled out: every dialect has it)."""
    both_null = exp.and_(
        exp.Is(this=left.copy(), expression=exp.null()),
        exp.Is(this=right.copy(), expression=exp.null()),
    )
    return exp.Paren(this=exp.or_(exp.EQ(this=left, expression=right), both_null))


def _raise() -> Any:
    raise ValueError("not a finite number")


def _date_only(value: Any) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def _as_datetime(value: date) -> datetime:
    return datetime(value.year, value.month, value.day)


def _from_topic_filter(topic_filter: TopicFilter) -> Filter:
    for op in ("eq", "neq", "gt", "gte", "lt", "lte"):
        scalar = getattr(topic_filter, op)
        if scalar is not None:
            return Filter(field=topic_filter.field, op=op, value=scalar.value)
    if topic_filter.in_ is not None:
        return Filter(field=topic_filter.field, op="in", values=tuple(topic_filter.in_.values))
    if topic_filter.not_in is not None:
        return Filter(
            field=topic_filter.field, op="not_in", values=tuple(topic_filter.not_in.values)
        )
    ranged = topic_filter.in_date_range or topic_filter.not_in_date_range
    assert ranged is not None
    op = "in_date_range" if topic_filter.in_date_range is not None else "not_in_date_range"
    return Filter(field=topic_filter.field, op=op, **{"from": ranged.from_}, to=ranged.to)
