"""Semantic layer: ``*.view.yml`` (one table's entities, dimensions, measures) and
``*.topic.yml`` (a set of views queried together).

Views and topics are referenced by their declared ``name``, not their path, so the
name is what the compiler indexes them by.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from quarry.definitions.models.common import RetrievalConfig, Scalar, Strict


class Entity(Strict):
    name: str
    type: Literal["primary", "foreign"]
    description: str
    key: str | None = None
    keys: list[str] | None = None


class Dimension(Strict):
    name: str
    type: Literal["string", "number", "date", "datetime", "boolean"]
    expr: str
    description: str | None = None
    original_expr: str | None = None
    samples: list[Scalar] | None = None
    synonyms: list[str] | None = None


class MeasureFilter(Strict):
    expr: str
    description: str | None = None
    original_expr: str | None = None


class Measure(Strict):
    name: str
    type: Literal["count", "sum", "average", "min", "max", "count_distinct", "median", "custom"]
    expr: str | None = None
    description: str | None = None
    original_expr: str | None = None
    filters: list[MeasureFilter] | None = None
    samples: list[Scalar] | None = None
    synonyms: list[str] | None = None


class ViewConfig(Strict):
    name: str
    description: str
    entities: list[Entity]
    dimensions: list[Dimension]
    measures: list[Measure] | None = None
    datasource: str | None = None
    table: str | None = None
    sql: str | None = None
    label: str | None = None


class ScalarFilterValue(Strict):
    value: Scalar = None


class ListFilterValue(Strict):
    values: list[Scalar]


class DateRangeFilterValue(Strict):
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


class TopicFilter(Strict):
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


class TopicConfig(Strict):
    name: str
    description: str
    views: list[str]
    base_view: str | None = None
    default_filters: list[TopicFilter] | None = None
    retrieval: RetrievalConfig | None = None
