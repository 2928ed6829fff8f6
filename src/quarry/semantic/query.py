"""The semantic query: what to measure, by what, filtered how.

One model reads both spellings Quarry meets:

* Oxy's ``semantic_query`` task (``filters: [{field, op, value|values|from/to}]``,
  ``orders: [{field, direction}]``, ``time_dimensions: [{dimension, granularity}]``);
* airlayer's ``QueryRequest`` (``filters: [{member, operator, values}]`` with nested
  ``and``/``or``, ``order: [{id, desc}]``, ``date_range``, ``segments``, ``motif``).

Both are normalised to the first form, so the compiler sees one shape. Values stay
values: they are bound as parameters, never spliced into SQL.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quarry.semantic.errors import SemanticError

Granularity = Literal["second", "minute", "hour", "day", "week", "month", "quarter", "year"]
GRANULARITIES: tuple[str, ...] = (
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "quarter",
    "year",
)

FilterOp = Literal[
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
    "contains",
    "not_contains",
    "starts_with",
    "not_starts_with",
    "ends_with",
    "not_ends_with",
    "set",
    "not_set",
    "before_date",
    "before_or_on_date",
    "after_date",
    "after_or_on_date",
]

# airlayer's camelCase operators -> Quarry's (Oxy's) snake_case ones.
_AIRLAYER_OPS = {
    "equals": "eq",
    "notEquals": "neq",
    "contains": "contains",
    "notContains": "not_contains",
    "startsWith": "starts_with",
    "notStartsWith": "not_starts_with",
    "endsWith": "ends_with",
    "notEndsWith": "not_ends_with",
    "gt": "gt",
    "gte": "gte",
    "lt": "lt",
    "lte": "lte",
    "set": "set",
    "notSet": "not_set",
    "inDateRange": "in_date_range",
    "notInDateRange": "not_in_date_range",
    "beforeDate": "before_date",
    "beforeOrOnDate": "before_or_on_date",
    "afterDate": "after_date",
    "afterOrOnDate": "after_or_on_date",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Filter(_Model):
    """``field <op> value``; ``values`` for ``in``/``not_in``, ``from``/``to`` for ranges."""

    field: str
    op: FilterOp
    value: Any = None
    values: tuple[Any, ...] | None = None
    from_: Any = Field(default=None, alias="from")
    to: Any = None


class FilterGroup(_Model):
    """Nested ``and``/``or`` of filters (airlayer); exactly one of the two."""

    and_: tuple[FilterItem, ...] | None = Field(default=None, alias="and")
    or_: tuple[FilterItem, ...] | None = Field(default=None, alias="or")

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.and_ is None) == (self.or_ is None):
            raise ValueError("a filter group needs exactly one of 'and' or 'or'")
        return self


FilterItem = Filter | FilterGroup
FilterGroup.model_rebuild()


class TimeDimension(_Model):
    dimension: str
    granularity: Granularity | None = None
    date_range: tuple[Any, Any] | None = None


class Order(_Model):
    field: str
    direction: Literal["asc", "desc"] = "asc"

    @model_validator(mode="before")
    @classmethod
    def _lower(cls, data: Any) -> Any:
        """Oxy sorts descending only for ``desc`` (any case) and ascending otherwise;
        Quarry reads ``descending`` as descending too."""
        if isinstance(data, dict) and isinstance(data.get("direction"), str):
            wanted = data["direction"].strip().lower()
            data = {**data, "direction": "desc" if wanted in ("desc", "descending") else "asc"}
        return data


class SemanticQuery(_Model):
    """A semantic query in Oxy's task shape (airlayer's JSON shape is accepted too)."""

    topic: str | None = None
    measures: tuple[str, ...] = ()
    dimensions: tuple[str, ...] = ()
    time_dimensions: tuple[TimeDimension, ...] = ()
    filters: tuple[FilterItem, ...] = ()
    segments: tuple[str, ...] = ()
    orders: tuple[Order, ...] = ()
    limit: int | None = Field(default=None, ge=0)
    offset: int | None = Field(default=None, ge=0)
    variables: dict[str, Any] | None = None
    motif: str | None = None
    motif_params: dict[str, Any] | None = None
    timezone: str | None = None
    ungrouped: bool = False
    through: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _airlayer_shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "order" in data:
            if "orders" in data:
                raise ValueError("give 'orders' or 'order', not both")
            data["orders"] = [_airlayer_order(o) for o in data.pop("order") or []]
        if "filters" in data and isinstance(data["filters"], list):
            data["filters"] = [_airlayer_filter(f) for f in data["filters"]]
        if isinstance(data.get("through"), str):
            data["through"] = [data["through"]]
        return data

    @model_validator(mode="after")
    def _asks_for_something(self) -> Self:
        if not (self.measures or self.dimensions or self.time_dimensions):
            raise ValueError("a query needs at least one measure, dimension or time dimension")
        return self

    @classmethod
    def from_request(cls, data: Any) -> SemanticQuery:
        """Validate a JSON body; a bad one is a :class:`SemanticError` naming the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "query"
            raise SemanticError(f"invalid semantic query: {where}: {first['msg']}") from None

    def cache_key(self) -> str:
        """A stable text for this query: equal queries, equal keys."""
        return self.model_dump_json(by_alias=True, exclude_defaults=True)


def _airlayer_order(order: Any) -> Any:
    if isinstance(order, dict) and "id" in order:
        return {"field": order["id"], "direction": "desc" if order.get("desc") else "asc"}
    return order


def _airlayer_filter(item: Any) -> Any:
    """``{member, operator, values}`` -> ``{field, op, ...}``; groups recursively."""
    if not isinstance(item, dict):
        return item
    if "and" in item or "or" in item:
        return {
            k: [_airlayer_filter(f) for f in v] if k in ("and", "or") else v
            for k, v in item.items()
        }
    if "member" not in item and "operator" not in item:
        return item
    member = item.get("member")
    raw = item.get("operator")
    values = list(item.get("values") or [])
    op = _AIRLAYER_OPS.get(str(raw), raw)
    extra = {k: v for k, v in item.items() if k not in ("member", "operator", "values")}
    if extra:  # unknown keys: let validation name them
        return {"field": member, "op": op, **extra}
    if op in ("eq", "neq") and len(values) != 1:
        return {"field": member, "op": "in" if op == "eq" else "not_in", "values": values}
    if op in ("in_date_range", "not_in_date_range"):
        if len(values) != 2:
            raise ValueError(f"filter on '{member}': {raw} needs two values (from, to)")
        return {"field": member, "op": op, "from": values[0], "to": values[1]}
    if op in ("set", "not_set"):
        return {"field": member, "op": op}
    if len(values) != 1:
        raise ValueError(f"filter on '{member}': {raw} needs exactly one value")
    return {"field": member, "op": op, "value": values[0]}
