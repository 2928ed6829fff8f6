"""Render benchmark: templates per second, the minijinja path vs the Jinja2 path.

Issue 15 moved templating from Jinja2 (a ``SandboxedEnvironment`` with
``StrictUndefined``) to the minijinja binding configured as Oxy configures it. The
goal: rendering no slower than before. The Jinja2 renderer as it was before the
change (``git show 68b2714^:src/quarry/runtime/engine/templating.py``) is kept below,
in this script only, so both run side by side in one process on the same contexts.

Workloads (what the engine renders during runs; the context of each is what a step
really sees: variables, earlier outputs as views):

* ``sql_sqlquote``  an ``execute_sql`` text with variables and ``sqlquote``
* ``sql_param``     the same with ``param`` (bound values)
* ``sql_plain``     SQL with no tag at all
* ``text_short``    a one-line text with two names (a prompt, an export path)
* ``table_rows``    a formatter walking a 100-row table into Markdown rows
* ``loop_outputs``  a formatter walking a 20-iteration loop's outputs
* ``condition``     a conditional's ``if`` expression
* ``values``        a loop's ``values: "{{ t.region }}"`` (a column as a list)

Each round runs every workload on both engines for ``--seconds`` each, the order
of the two engines alternating between rounds (drift on a shared machine lands on
both). Printed per workload: templates/s, median and worst round, for each engine,
and the ratios minijinja/Jinja2 (> 1 is faster).

    .venv/bin/python bench/render_bench.py [--rounds 7] [--seconds 0.4]
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any

import pyarrow as pa
from jinja2 import StrictUndefined, Template, TemplateError, Undefined, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from quarry.runtime.connectors.base import BoundSql
from quarry.runtime.engine import templating as minijinja_path
from quarry.runtime.engine.results import ListOutput, TableOutput, TextOutput
from quarry.runtime.engine.views import to_view

# --- the Jinja2 renderer before issue 15 (a verbatim copy, for comparison only) -------


class TemplateProblem(Exception):
    pass


def _old_sqlquote(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_old_sqlquote(v) for v in value)
    if isinstance(value, (date,)):
        value = value.isoformat()
    text = str(value)
    if "\x00" in text:
        raise TemplateProblem("sqlquote: a value may not contain a NUL character")
    return "'" + text.replace("'", "''") + "'"


class _Params:
    def __init__(self) -> None:
        self.token = f"__qp{secrets.token_hex(6)}__"
        self.values: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> str:
        with self._lock:
            self.values.append(value)
            return f"{self.token}{len(self.values) - 1}{self.token}"


@pass_context
def _param_filter(context: Context, value: Any) -> str:
    collector = context.get("param")
    if not isinstance(collector, _Params):
        raise TemplateProblem("the param filter is only available in SQL")
    return collector(value)


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters["sqlquote"] = _old_sqlquote
    env.filters["param"] = _param_filter
    return env


_ENV = _environment()


@lru_cache(maxsize=1024)
def _template(source: str) -> Template:
    return _ENV.from_string(source)


@lru_cache(maxsize=1024)
def _expression(source: str) -> Any:
    return _ENV.compile_expression(source, undefined_to_none=False)


def old_render_text(source: str, context: Mapping[str, Any]) -> str:
    try:
        return _template(source).render(context)
    except (TemplateError, TemplateProblem, TypeError, ValueError) as exc:
        raise TemplateProblem(str(exc)) from exc


def old_render_sql(source: str, context: Mapping[str, Any]) -> BoundSql:
    params = _Params()
    try:
        text = _template(source).render({**context, "param": params})
    except (TemplateError, TemplateProblem, TypeError, ValueError) as exc:
        raise TemplateProblem(str(exc)) from exc
    return BoundSql(text=text, params=tuple(params.values), token=params.token)


_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


def _old_expression(source: str, context: Mapping[str, Any]) -> Any:
    result = _expression(source)(**context)
    if isinstance(result, Undefined):
        result._fail_with_undefined_error()
    return result


def old_evaluate(value: Any, context: Mapping[str, Any]) -> Any:
    match = _SINGLE_EXPRESSION.match(value)
    assert match is not None
    return _old_expression(match.group("expr").strip(), context)


def old_condition(source: str, context: Mapping[str, Any]) -> bool:
    return bool(_old_expression(source.strip(), context))


# --- workloads -----------------------------------------------------------------------


def _context() -> dict[str, Any]:
    regions = ["East", "North", "South", "West"]
    table = pa.table(
        {
            "region": [regions[i % 4] for i in range(100)],
            "orders": list(range(100)),
            "revenue": [round(i * 12.5, 2) for i in range(100)],
        }
    )
    loop = ListOutput(
        tuple(
            {"per_region": TextOutput(f"region {i}"), "total": TextOutput(str(i * 10))}
            for i in range(20)
        )
    )
    return {
        "region": "East",
        "start": "2024-01-01",
        "limit": 100,
        "customer": "O'Brien",
        "threshold": 3,
        "by_region": to_view(TableOutput(table)),
        "regions": to_view(loop),
    }


SQL = (
    "SELECT category, count(*) AS orders, sum(quantity * unit_price) AS revenue\n"
    "FROM 'orders.csv'\n"
    "WHERE region = {{ region | sqlquote }} AND order_date >= {{ start | sqlquote }}\n"
    "  AND customer_name <> {{ customer | sqlquote }}\n"
    "GROUP BY category ORDER BY revenue DESC LIMIT {{ limit }}"
)
SQL_PARAM = SQL.replace("| sqlquote", "| param")
SQL_PLAIN = "SELECT region, count(*) AS n FROM 'orders.csv' GROUP BY region ORDER BY region"
TEXT = "exports/{{ region }}/report-{{ start }}.csv"
TABLE = (
    "| region | orders | revenue |\n|---|---|---|\n"
    "{% for row in by_region %}| {{ row.region }} | {{ row.orders }} | {{ row.revenue }} |\n"
    "{% endfor %}"
)
LOOP = "{% for it in regions %}{{ it.per_region }}: {{ it.total }}\n{% endfor %}"
CONDITION = "threshold > 2 and region == 'East'"
VALUES = "{{ by_region.region }}"

Workload = tuple[Callable[[dict[str, Any]], Any], Callable[[dict[str, Any]], Any]]

WORKLOADS: dict[str, Workload] = {
    "sql_sqlquote": (
        lambda c: old_render_sql(SQL, c),
        lambda c: minijinja_path.render_sql(SQL, c),
    ),
    "sql_param": (
        lambda c: old_render_sql(SQL_PARAM, c),
        lambda c: minijinja_path.render_sql(SQL_PARAM, c),
    ),
    "sql_plain": (
        lambda c: old_render_sql(SQL_PLAIN, c),
        lambda c: minijinja_path.render_sql(SQL_PLAIN, c),
    ),
    "text_short": (
        lambda c: old_render_text(TEXT, c),
        lambda c: minijinja_path.render_text(TEXT, c),
    ),
    "table_rows": (
        lambda c: old_render_text(TABLE, c),
        lambda c: minijinja_path.render_text(TABLE, c),
    ),
    "loop_outputs": (
        lambda c: old_render_text(LOOP, c),
        lambda c: minijinja_path.render_text(LOOP, c),
    ),
    "condition": (
        lambda c: old_condition(CONDITION, c),
        lambda c: minijinja_path.condition(CONDITION, c),
    ),
    "values": (
        lambda c: old_evaluate(VALUES, c),
        lambda c: minijinja_path.evaluate(VALUES, c),
    ),
}


def _rate(fn: Callable[[dict[str, Any]], Any], context: dict[str, Any], seconds: float) -> float:
    fn(context)  # compile / warm the caches outside the clock
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(20):
            fn(context)
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


def _check_same_output(context: dict[str, Any]) -> None:
    """Both engines give the same text for every workload (the bench compares equals)."""
    for name, (old, new) in WORKLOADS.items():
        a, b = old(context), new(context)
        if isinstance(a, BoundSql):
            a, b = a.display(), b.display()
        if name == "values":
            a, b = list(a), list(b)
        assert str(a).rstrip("\n") == str(b).rstrip("\n"), (name, a, b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.4)
    parser.add_argument("--only", help="comma-separated workload names")
    args = parser.parse_args()
    context = _context()
    _check_same_output(context)
    names = args.only.split(",") if args.only else list(WORKLOADS)
    rates: dict[str, dict[str, list[float]]] = {n: {"jinja2": [], "minijinja": []} for n in names}
    for round_no in range(args.rounds):
        for name in names:
            old, new = WORKLOADS[name]
            order = [("jinja2", old), ("minijinja", new)]
            if round_no % 2:
                order.reverse()
            for engine, fn in order:
                rates[name][engine].append(_rate(fn, context, args.seconds))
    header = (
        f"{'workload':<14} {'jinja2 med':>11} {'worst':>9} {'minijinja med':>14} {'worst':>9}"
        f" {'ratio med':>10} {'ratio worst':>12}"
    )
    print(f"rounds={args.rounds} seconds={args.seconds} (templates/s; ratio = minijinja/jinja2)")
    print(header)
    for name in names:
        old_r, new_r = rates[name]["jinja2"], rates[name]["minijinja"]
        old_med, new_med = statistics.median(old_r), statistics.median(new_r)
        old_worst, new_worst = min(old_r), min(new_r)
        print(
            f"{name:<14} {old_med:>11,.0f} {old_worst:>9,.0f} {new_med:>14,.0f} {new_worst:>9,.0f}"
            f" {new_med / old_med:>10.2f} {new_worst / old_worst:>12.2f}"
        )


if __name__ == "__main__":
    main()
