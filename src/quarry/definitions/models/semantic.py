"""Semantic layer: ``*.view.yml`` (one table's entities, dimensions, measures),
``*.topic.yml`` (a set of views queried together), ``*.motif.yml`` (a reusable
post-aggregation pattern) and ``*.query.yml`` (saved multi-step queries).

Views and topics are referenced by their declared ``name``, not their path, so the
name is what the compiler indexes them by. The fields are airlayer's (Oxy's
engine); ``quarry.semantic`` compiles them to SQL.

Oxy reads views and topics (``crates/semantic/src/models.rs``) without
``deny_unknown_fields``, so their mappings are :class:`Lenient`: an unknown key is
a warning, as in agents and apps. Segments, row-filter rules, motifs and saved
queries are not in Oxy's model (airlayer's or Quarry's own): a typo there stays an
error.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, model_validator

from quarry.definitions.models.common import Lenient, RetrievalConfig, Scalar, Strict


class Entity(Lenient):
    name: str
    type: Literal["primary", "foreign"] = "primary"
    description: str | None = None
    key: str | None = None
    keys: list[str] | None = None


class Dimension(Lenient):
    name: str
    type: Literal["string", "number", "date", "datetime", "boolean", "geo"]
    expr: str
    description: str | None = None
    original_expr: str | None = None
    samples: list[Scalar] | None = None
    synonyms: list[str] | None = None
    primary_key: bool | None = None


class MeasureFilter(Lenient):
    expr: str
    description: str | None = None
    original_expr: str | None = None


class RollingWindow(Lenient):
    """airlayer's ``rolling_window``: the window frame, in periods of the query's
    time dimension, that the measure is aggregated over (``trailing: unbounded`` is
    a running total, ``trailing: "7"`` the current period and the 7 before)."""

    trailing: str = "unbounded"
    leading: str = "current row"

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        for side in ("trailing", "leading"):
            value = getattr(self, side).strip().lower()
            if value not in ("unbounded", "current row") and not value.isdigit():
                raise ValueError(
                    f"rolling_window {side} is 'unbounded', 'current row' or a number of "
                    f"periods, not {getattr(self, side)!r}"
                )
            setattr(self, side, value)
        return self


class Measure(Lenient):
    name: str
    type: Literal[
        "count",
        "sum",
        "average",
        "avg",
        "min",
        "max",
        "count_distinct",
        "count_distinct_approx",
        "median",
        "number",
        "custom",
    ]
    expr: str | None = None
    description: str | None = None
    original_expr: str | None = None
    filters: list[MeasureFilter] | None = None
    samples: list[Scalar] | None = None
    synonyms: list[str] | None = None
    rolling_window: RollingWindow | None = None


class Segment(Strict):
    """A named, reusable row condition (airlayer ``segments``), applied by name."""

    name: str
    expr: str
    description: str | None = None


class ViewConfig(Lenient):
    name: str
    description: str | None = None
    entities: list[Entity]
    dimensions: list[Dimension]
    measures: list[Measure] | None = None
    datasource: str | None = None
    dialect: str | None = None
    table: str | None = None
    sql: str | None = None
    label: str | None = None
    segments: list[Segment] = []


class ScalarFilterValue(Lenient):
    value: Scalar = None


class ListFilterValue(Lenient):
    values: list[Scalar]


class DateRangeFilterValue(Lenient):
    from_: Scalar = Field(default=None, alias="from")
    to: Scalar = None


_OPERATORS = (
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "in_date_range",
    "not_in_date_range",
)


class TopicFilter(Lenient):
    """``{field: x, <operator>: {...}}``: exactly one operator key per filter."""

    field: str
    eq: ScalarFilterValue | None = None
    neq: ScalarFilterValue | None = None
    gt: ScalarFilterValue | None = None
    gte: ScalarFilterValue | None = None
    lt: ScalarFilterValue | None = None
    lte: ScalarFilterValue | None = None
    in_: ListFilterValue | None = Field(default=None, alias="in")
    not_in: ListFilterValue | None = None
    in_date_range: DateRangeFilterValue | None = None
    not_in_date_range: DateRangeFilterValue | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> Self:
        given = [op for op in _OPERATORS if getattr(self, "in_" if op == "in" else op) is not None]
        if len(given) != 1:
            raise ValueError(
                "a topic filter needs exactly one operator of: " + ", ".join(_OPERATORS)
            )
        return self


class RowFilterRule(Strict):
    """Rows of ``member`` are visible only where it equals the caller's ``attribute``.

    ``attribute`` names a principal attribute (``tenant`` is always there); a caller
    without it sees nothing rather than everything.
    """

    member: str
    attribute: str


class TopicSecurity(Strict):
    row_filters: list[RowFilterRule] = []


class TopicConfig(Lenient):
    name: str
    description: str | None = None
    views: list[str]
    base_view: str | None = None
    default_filters: list[TopicFilter] | None = None
    retrieval: RetrievalConfig | None = None
    security: TopicSecurity | None = None


class MotifParam(Strict):
    type: Literal["measure", "dimension", "time", "number", "string"]
    description: str | None = None
    default: Scalar = None
    constraints: list[str] = []


class MotifOutput(Strict):
    name: str
    expr: str
    description: str | None = None


class MotifConfig(Strict):
    """``*.motif.yml``: output columns computed over the aggregated base query."""

    name: str
    description: str | None = None
    params: dict[str, MotifParam] = {}
    outputs: list[MotifOutput] = Field(min_length=1)


_QUERY_KEYS = frozenset(
    {
        "topic",
        "measures",
        "dimensions",
        "time_dimensions",
        "filters",
        "segments",
        "order",
        "orders",
        "limit",
        "offset",
        "timezone",
        "ungrouped",
        "through",
        "motif",
        "motif_params",
        "variables",
    }
)


class SavedQueryParam(Strict):
    type: str
    values: list[Scalar] | None = None
    default: Any = None
    description: str | None = None


class SavedQueryStep(Strict):
    name: str
    description: str | None = None
    # A semantic query (airlayer's QueryRequest shape); ``quarry.semantic`` checks it.
    query: dict[str, Any]


class SavedQueryConfig(Strict):
    """``*.query.yml``: named steps, each a semantic query, run in order."""

    name: str
    description: str | None = None
    params: dict[str, SavedQueryParam] = {}
    steps: list[SavedQueryStep] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _inline_query(cls, data: Any) -> Any:
        """A file without ``steps`` may hold one query inline (airlayer's single step)."""
        if not isinstance(data, dict) or "steps" in data:
            return data
        inline = {k: v for k, v in data.items() if k in _QUERY_KEYS}
        if not inline:
            return data
        rest = {k: v for k, v in data.items() if k not in _QUERY_KEYS}
        step = {"name": data.get("name"), "query": inline}
        if data.get("description") is not None:
            step["description"] = data["description"]
        return {**rest, "steps": [step]}

    @model_validator(mode="after")
    def _unique_steps(self) -> Self:
        names = [step.name for step in self.steps]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError("step names must be unique; repeated: " + ", ".join(duplicated))
        return self
