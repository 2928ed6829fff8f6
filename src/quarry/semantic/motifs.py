"""Motifs: analytical columns computed over the aggregated result (airlayer's idea).

The compiled query becomes a CTE ``__base`` and the motif adds columns to each of
its rows. Built-in motifs:

* ``yoy``, ``qoq``, ``mom``, ``wow``, ``dod`` -> ``previous_value``, ``growth_rate``.
  Quarry finds the previous value by joining the row of the same dimension group
  one period earlier (``time - 1 year`` ...). airlayer takes ``LAG()`` over all
  rows, which compares with whatever row came before: another region's value when
  the query has dimensions, or a month two back when a month has no data.
* ``contribution`` (``total``, ``share``), ``percent_of_total``, ``rank``,
  ``cumulative`` (``cumulative_value``), ``moving_average`` (``moving_avg``,
  ``window`` rows before, default 6), ``anomaly`` (``mean_value``, ``stddev_value``,
  ``z_score``, ``is_anomaly`` with ``threshold``, default 2). Totals and ranks are
  per dimension group when the query has a time dimension too.

Custom motifs (``*.motif.yml``) substitute ``{{ measure }}``, ``{{ time }}``,
``{{ dimensions }}`` and their own params into each output expression.
With several measures, every output is emitted per measure as ``<measure>__<name>``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from quarry.semantic.errors import SemanticError
from quarry.semantic.expressions import parse_fragment

if TYPE_CHECKING:
    from quarry.semantic.compiler import OutputColumn, _Compiler, _Selected

_POP = {"yoy": "year", "qoq": "quarter", "mom": "month", "wow": "week", "dod": "day"}
_ORDER = ["second", "minute", "hour", "day", "week", "month", "quarter", "year"]
_TIME_MOTIFS = {*_POP, "cumulative", "moving_average"}
BUILTIN = (
    *_POP,
    "contribution",
    "percent_of_total",
    "rank",
    "cumulative",
    "moving_average",
    "anomaly",
)
_PARAM = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


def _col(alias: str, table: str = "b") -> exp.Expr:
    return exp.column(alias, table=table, quoted=True)


def apply_motif(
    compiler: _Compiler, base: exp.Select, groups: list[_Selected], measures: list[_Selected]
) -> tuple[exp.Select, list[OutputColumn]]:
    from quarry.semantic.compiler import OutputColumn

    name = compiler.query.motif or ""
    custom = compiler.model.motifs.get(name)
    if custom is None and name not in BUILTIN:
        known = sorted({*BUILTIN, *compiler.model.motifs})
        raise SemanticError(f"unknown motif '{name}' (known: {', '.join(known)})", motif=name)
    if not measures:
        raise SemanticError(f"motif '{name}' needs at least one measure in the query", motif=name)
    times = [g for g in groups if g.granularity]
    dims = [g for g in groups if not g.granularity]
    if name in _TIME_MOTIFS and not times:
        raise SemanticError(f"motif '{name}' needs a time dimension with a granularity", motif=name)
    params = dict(compiler.query.motif_params or {})
    select = exp.select(*[_col(s.alias) for s in [*groups, *measures]]).from_(
        exp.Table(
            this=exp.to_identifier("__base", quoted=True),
            alias=exp.TableAlias(this=exp.to_identifier("b")),
        )
    )
    columns: list[OutputColumn] = []
    many = len(measures) > 1
    for measure in measures:
        if custom is not None:
            outputs = _custom_outputs(compiler, custom, measure, times, dims, params)
        elif name in _POP:
            outputs, select = _pop(compiler, select, name, measure, times[0], dims, groups)
        else:
            outputs = _builtin(name, measure, times, dims, params)
        for out_name, tree in outputs:
            alias = f"{measure.member.name}__{out_name}" if many else out_name
            select = select.select(exp.alias_(tree, alias, quoted=True), copy=False)
            columns.append(OutputColumn(alias, measure.member.qualified, "motif", "number"))
    select = select.with_(exp.to_identifier("__base", quoted=True), as_=base, copy=False)
    extra = [c.name for c in columns]
    return compiler.order_and_limit(select, groups, measures, extra, table="b"), columns


def _partition(dims: list[_Selected]) -> list[exp.Expr]:
    return [_col(d.alias) for d in dims]


def _window(
    this: exp.Expr,
    dims: list[_Selected],
    order: list[exp.Expr] | None = None,
    spec: exp.Expr | None = None,
) -> exp.Expr:
    node = exp.Window(this=this, partition_by=_partition(dims) or None)
    if order:
        node.set("order", exp.Order(expressions=[exp.Ordered(this=o) for o in order]))
    if spec is not None:
        node.set("spec", spec)
    return node


def _pop(
    compiler: _Compiler,
    select: exp.Select,
    name: str,
    measure: _Selected,
    time: _Selected,
    dims: list[_Selected],
    groups: list[_Selected],
) -> tuple[list[tuple[str, exp.Expr]], exp.Select]:
    period = _POP[name]
    granularity = time.granularity or "day"
    if (
        _ORDER.index(granularity) > _ORDER.index(period)
        or (granularity == "week" and period != "week")
        or (period == "week" and granularity not in ("second", "minute", "hour", "day", "week"))
    ):
        raise SemanticError(
            f"motif '{name}' compares with the {period} before and cannot use "
            f"{granularity} granularity",
            motif=name,
        )
    prior = f"__p_{measure.alias}"
    if not any(
        isinstance(j.this, exp.Table) and j.this.alias == prior
        for j in select.args.get("joins") or []
    ):
        earlier = _period_before(_col(time.alias), period, compiler.dialect, time.member.type)
        conditions: list[exp.Expr] = [exp.EQ(this=_col(time.alias, prior), expression=earlier)]
        for d in dims:
            left, right = _col(d.alias, prior), _col(d.alias)
            conditions.append(
                exp.Paren(
                    this=exp.or_(
                        exp.EQ(this=left, expression=right),
                        exp.and_(
                            exp.Is(this=left.copy(), expression=exp.null()),
                            exp.Is(this=right.copy(), expression=exp.null()),
                        ),
                    )
                )
            )
        table = exp.Table(
            this=exp.to_identifier("__base", quoted=True),
            alias=exp.TableAlias(this=exp.to_identifier(prior, quoted=True)),
        )
        select = select.join(table, on=exp.and_(*conditions), join_type="left", copy=False)
    previous = _col(measure.alias, prior)
    current = _col(measure.alias)
    growth = exp.Case(
        ifs=[
            exp.If(
                this=exp.and_(
                    exp.Not(this=exp.Is(this=previous.copy(), expression=exp.null())),
                    exp.NEQ(this=previous.copy(), expression=exp.Literal.number(0)),
                ),
                true=exp.Div(
                    this=exp.Mul(
                        this=exp.Paren(this=exp.Sub(this=current, expression=previous.copy())),
                        expression=exp.Literal.number("1.0"),
                    ),
                    expression=exp.Abs(this=previous.copy()),
                ),
            )
        ]
    )
    return [("previous_value", previous), ("growth_rate", growth)], select


def _period_before(value: exp.Expr, period: str, dialect: str, kind: str) -> exp.Expr:
    """``value`` minus one ``period``; BigQuery cannot subtract months from a TIMESTAMP."""
    one, unit = exp.Literal.number(1), exp.var(period.upper())
    if dialect == "bigquery" and kind == "datetime":
        as_datetime = exp.Anonymous(this="DATETIME", expressions=[value])
        shifted = exp.DatetimeSub(this=as_datetime, expression=one, unit=unit)
        return exp.Anonymous(this="TIMESTAMP", expressions=[shifted])
    return exp.DateSub(this=value, expression=one, unit=unit)


def _number(params: dict[str, Any], key: str, default: float) -> Any:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        try:
            value = float(str(value)) if "." in str(value) else int(str(value))
        except ValueError:
            raise SemanticError(
                f"motif parameter '{key}' must be a number, got {value!r}"
            ) from None
    return value


def _builtin(
    name: str,
    measure: _Selected,
    times: list[_Selected],
    dims: list[_Selected],
    params: dict[str, Any],
) -> list[tuple[str, exp.Expr]]:
    value = _col(measure.alias)
    # With a time dimension, totals and ranks are per dimension group over time;
    # without one, over all rows.
    by = dims if times else []
    total = _window(exp.Sum(this=value.copy()), by)
    if name == "contribution":
        share = exp.Div(
            this=exp.Mul(this=value.copy(), expression=exp.Literal.number("1.0")),
            expression=exp.Nullif(this=total.copy(), expression=exp.Literal.number(0)),
        )
        return [("total", total), ("share", share)]
    if name == "percent_of_total":
        pct = exp.Div(
            this=exp.Mul(this=exp.Literal.number(100), expression=value.copy()),
            expression=exp.Nullif(this=total, expression=exp.Literal.number(0)),
        )
        return [("percent_of_total", pct)]
    if name == "rank":
        rank = exp.Window(
            this=exp.Anonymous(this="RANK", expressions=[]),
            partition_by=_partition(by) or None,
            order=exp.Order(expressions=[exp.Ordered(this=value.copy(), desc=True)]),
        )
        return [("rank", rank)]
    time_cols = [_col(t.alias) for t in times]
    if name == "cumulative":
        spec = exp.WindowSpec(
            kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"
        )
        return [("cumulative_value", _window(exp.Sum(this=value.copy()), dims, time_cols, spec))]
    if name == "moving_average":
        window = int(_number(params, "window", 6))
        spec = exp.WindowSpec(
            kind="ROWS", start=exp.Literal.number(window), start_side="PRECEDING", end="CURRENT ROW"
        )
        return [("moving_avg", _window(exp.Avg(this=value.copy()), dims, time_cols, spec))]
    # anomaly
    threshold = _number(params, "threshold", 2)
    mean = _window(exp.Avg(this=value.copy()), by)
    stddev = _window(exp.StddevPop(this=value.copy()), by)
    z = exp.Case(
        ifs=[
            exp.If(
                this=exp.GT(this=stddev.copy(), expression=exp.Literal.number(0)),
                true=exp.Div(
                    this=exp.Paren(this=exp.Sub(this=value.copy(), expression=mean.copy())),
                    expression=stddev.copy(),
                ),
            )
        ],
        default=exp.Literal.number(0),
    )
    flag = exp.Case(
        ifs=[
            exp.If(
                this=exp.GT(this=exp.Abs(this=z.copy()), expression=exp.Literal.number(threshold)),
                true=exp.Literal.number(1),
            )
        ],
        default=exp.Literal.number(0),
    )
    return [("mean_value", mean), ("stddev_value", stddev), ("z_score", z), ("is_anomaly", flag)]


def _custom_outputs(
    compiler: _Compiler,
    motif: Any,
    measure: _Selected,
    times: list[_Selected],
    dims: list[_Selected],
    params: dict[str, Any],
) -> list[tuple[str, exp.Expr]]:
    values: dict[str, exp.Expr] = {"measure": _col(measure.alias)}
    if times:
        values["time"] = _col(times[0].alias)
    for key, spec in motif.params.items():
        if spec.type == "number":
            given = {key: spec.default} if spec.default is not None else {}
            values[key] = exp.Literal.number(_number({**given, **params}, key, 0))
        elif spec.type == "string":
            values[key] = compiler.binder.bind(str(params.get(key, spec.default)))
    outputs = []
    for output in motif.outputs:
        where = f"motif '{motif.name}' output '{output.name}'"
        keys = _PARAM.findall(output.expr)
        for key in keys:
            if key not in values:
                raise SemanticError(f"{where}: no value for '{{{{ {key} }}}}'", motif=motif.name)
        text = _PARAM.sub(lambda m: f"__motif_{m.group(1)}", output.expr)
        tree = parse_fragment(text, compiler.dialect, where)
        outputs.append((output.name, _substitute(tree, values)))
    return outputs


def _substitute(tree: exp.Expr, values: dict[str, exp.Expr]) -> exp.Expr:
    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table and node.name.startswith("__motif_"):
            return values[node.name.removeprefix("__motif_")].copy()
        return node

    return tree.copy().transform(swap, copy=False)
