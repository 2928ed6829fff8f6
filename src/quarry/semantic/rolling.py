"""``rolling_window`` measures: aggregated per period, then over a window of periods.

airlayer renders a rolling measure as a window function whose frame is
``rolling_window`` (``trailing: unbounded`` -> ``UNBOUNDED PRECEDING``, ``"7"`` ->
``7 PRECEDING``; ``leading`` likewise, ``current row`` by default). Quarry does the
same, but over the **already aggregated**, fan-out-safe result (one row per group,
see :mod:`quarry.semantic.compiler`): each period's value is computed once, then

    SUM(revenue) OVER (PARTITION BY <the other dimensions>
                       ORDER BY <the time dimension>
                       ROWS BETWEEN 7 PRECEDING AND CURRENT ROW)

so a running total never counts a fanned-out row twice. Re-aggregating per-period
values is exact for ``sum``, ``count`` (a sum of counts), ``min`` and ``max``; an
average, median or distinct count of a window is not a function of its periods'
values, so those are refused rather than answered wrongly. The frame counts the
periods present in the result (as airlayer's ``ROWS`` frame does): a period with
no rows is not a row, so it does not take up a place in the window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from quarry.definitions.models.semantic import Measure
from quarry.semantic.errors import SemanticError

if TYPE_CHECKING:
    from quarry.semantic.compiler import _Selected

_REAGGREGATE = {"sum": exp.Sum, "count": exp.Sum, "min": exp.Min, "max": exp.Max}


def _bound(value: str, side: str) -> tuple[str | exp.Expr, str | None]:
    if value == "current row":
        return "CURRENT ROW", None
    direction = "PRECEDING" if side == "trailing" else "FOLLOWING"
    if value == "unbounded":
        return "UNBOUNDED", direction
    return exp.Literal.number(int(value)), direction


def rolled(
    combined: exp.Select,
    groups: list[_Selected],
    measures: list[_Selected],
) -> exp.Select:
    """``combined`` (one row per group) with each rolling measure over its window."""
    times = [g for g in groups if g.granularity]
    others = [g for g in groups if not g.granularity]
    column = "__r"
    select = exp.select(*[exp.column(g.alias, table=column, quoted=True) for g in groups]).from_(
        exp.Subquery(
            this=combined, alias=exp.TableAlias(this=exp.to_identifier(column, quoted=True))
        ),
        copy=False,
    )
    for m in measures:
        value = exp.column(m.alias, table=column, quoted=True)
        definition = m.member.definition
        assert isinstance(definition, Measure)
        window = definition.rolling_window
        if window is None:
            select = select.select(exp.alias_(value, m.alias, quoted=True), copy=False)
            continue
        if not times:
            raise SemanticError(
                f"measure '{m.member.qualified}' has a rolling_window: the query needs a time "
                "dimension with a granularity to roll over",
                member=m.member.qualified,
            )
        again = _REAGGREGATE.get(definition.type)
        if again is None:
            raise SemanticError(
                f"measure '{m.member.qualified}': rolling_window works on sum, count, min and "
                f"max measures; a {definition.type} over a window is not a function of its "
                "periods' values",
                member=m.member.qualified,
            )
        start, start_side = _bound(window.trailing, "trailing")
        end, end_side = _bound(window.leading, "leading")
        spec = exp.WindowSpec(
            kind="ROWS", start=start, start_side=start_side, end=end, end_side=end_side
        )
        node = exp.Window(
            this=again(this=value),
            partition_by=[exp.column(g.alias, table=column, quoted=True) for g in others] or None,
            order=exp.Order(
                expressions=[
                    exp.Ordered(
                        this=exp.column(t.alias, table=column, quoted=True), nulls_first=False
                    )
                    for t in times
                ]
            ),
            spec=spec,
        )
        select = select.select(exp.alias_(node, m.alias, quoted=True), copy=False)
    return select
