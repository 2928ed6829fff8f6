"""``ungrouped: true`` queries: one output row per row of the data, no GROUP BY.

airlayer's query API skips the GROUP BY when ``ungrouped`` is set. Quarry does the
same, with the measures as their **row-level** values: a ``sum``/``average``/
``min``/``max``/``median``/``count_distinct`` measure is its ``expr`` (inside
``CASE WHEN <filters> THEN ... END`` when it has filters) and a ``count`` is 1 (or
1/0 by its filters), so summing an ungrouped column gives the grouped answer.
``number`` and ``custom`` measures are formulas over aggregates and have no row
value: they are refused, as are filters on measures (they filter aggregates) and
motifs (they compare groups).

The rows are those of the one view the measures belong to (or of the topic's
``base_view`` / the first dimension's view when there are none), with the views of
the dimensions and filters joined from it. A join that repeats its rows (to a view
with many rows per row) would show each value several times, so such a query is
refused naming the views, as the grouped compiler refuses what it cannot count once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from quarry.definitions.models.semantic import Measure
from quarry.semantic.errors import SemanticError
from quarry.semantic.expressions import qualify

if TYPE_CHECKING:
    from quarry.semantic.compiler import _Compiler, _Condition, _Selected


def row_value(compiler: _Compiler, selected: _Selected) -> exp.Expr:
    """A measure's value for one row."""
    member = selected.member
    measure = member.definition
    assert isinstance(measure, Measure)
    if measure.type in ("number", "custom"):
        raise SemanticError(
            f"measure '{member.qualified}' ({measure.type}) is a formula over aggregates and "
            "has no value per row; an ungrouped query cannot show it",
            member=member.qualified,
        )
    value: exp.Expr | None = None
    if measure.expr:
        where = f"measure '{member.qualified}' expr"
        value = qualify(
            compiler._parsed(measure.expr, where), member.view, variable=compiler.variable
        )
    if measure.type == "count":
        value = exp.Literal.number(1)
    elif value is None:
        raise SemanticError(
            f"measure '{member.qualified}': a {measure.type} measure needs an expr",
            member=member.qualified,
        )
    conditions = [
        qualify(
            compiler._parsed(f.expr, f"measure '{member.qualified}' filter"),
            member.view,
            variable=compiler.variable,
        )
        for f in measure.filters or []
    ]
    if not conditions:
        return value
    cond = exp.and_(*conditions) if len(conditions) > 1 else conditions[0]
    otherwise = exp.Literal.number(0) if measure.type == "count" else None
    return exp.Case(ifs=[exp.If(this=cond, true=value)], default=otherwise)


def ungrouped_select(
    compiler: _Compiler,
    groups: list[_Selected],
    measures: list[_Selected],
    where: list[_Condition],
    having: list[exp.Expr],
) -> exp.Select:
    """The rows of the query, not grouped; ORDER BY/LIMIT are added by the caller."""
    if having:
        raise SemanticError(
            "an ungrouped query cannot filter on a measure (that filters aggregates); "
            "filter on dimensions, or drop ungrouped"
        )
    if compiler.query.motif:
        raise SemanticError(
            f"motif '{compiler.query.motif}' compares groups; an ungrouped query has none",
            motif=compiler.query.motif,
        )
    views = sorted({m.member.view for m in measures})
    if len(views) > 1:
        raise SemanticError(
            f"an ungrouped query shows rows of one view, and its measures belong to "
            f"{', '.join(repr(v) for v in views)}: each row of one would repeat the other's "
            "values; ask for the measures of one view, or group",
            view=views[1],
        )
    needed = compiler._needed(groups, where) | set(views)
    if measures:
        root = measures[0].member.view
    else:
        topic = compiler.topic
        base = topic.base_view if topic is not None else None
        root = base if base in needed else groups[0].member.view
    edges = compiler._tree(root, needed)
    fanning = [e for e in edges if e.fans_out]
    if fanning:
        raise SemanticError(
            f"an ungrouped query reads one row per '{root}' row, and view "
            f"'{fanning[0].target}' has many rows for one '{root}' row, which would repeat "
            "its values; ask for measures of the view with the most rows, or group",
            view=fanning[0].target,
        )
    select = exp.select(
        *[exp.alias_(compiler._group_expr(s), s.alias, quoted=True) for s in groups],
        *[exp.alias_(row_value(compiler, m), m.alias, quoted=True) for m in measures],
    ).from_(compiler.source(root), copy=False)
    select = compiler._joined(select, edges)
    return compiler._where(select, where)
