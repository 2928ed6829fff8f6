"""Templates are sandboxed: no Python internals, no methods of Python objects, no
files, and a bounded amount of work and output per render."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pytest

from quarry.runtime.engine.results import TableOutput
from quarry.runtime.engine.template_env import MAX_OUTPUT_CHARS
from quarry.runtime.engine.templating import (
    TemplateProblem,
    evaluate,
    render_sql,
    render_text,
    set_limits,
)
from quarry.runtime.engine.views import to_view


class Secretive:
    def __init__(self) -> None:
        self.token = "s3cr3t"

    def reveal(self) -> str:
        return self.token

    def __str__(self) -> str:
        return "a secretive object"


def context() -> dict[str, Any]:
    return {
        "xs": [1, 2],
        "d": {"a": 1},
        "t": to_view(TableOutput(pa.table({"n": [1, 2]}))),
        "obj": Secretive(),
        "fn": len,
    }


@pytest.mark.parametrize(
    "template",
    [
        "{{ xs.__class__ }}",
        "{{ d.__class__ }}",
        "{{ t.__class__ }}",
        "{{ t._view }}",
        "{{ t._table }}",
        "{{ obj.token }}",
        "{{ obj.reveal }}",
        "{{ now.__globals__ }}",
        "{{ param.__self__ }}",
        "{{ namespace().__dict__ }}",
    ],
)
def test_internals_and_methods_print_nothing(template: str) -> None:
    assert render_text(template, context()) == ""
    with pytest.raises(TemplateProblem):
        render_text(template, context(), strict=True)


def test_lists_and_mappings_have_no_methods_to_reach() -> None:
    # A method's name prints nothing, is false and cannot be called (the binding
    # needs an ``items`` attribute to see a mapping at all).
    names = context()
    for method in ("d.items", "d.keys", "d.get", "d.update", "xs.append", "xs.pop", "xs.sort"):
        template = f"[{{{{ {method} }}}}]{{% if {method} %}}yes{{% endif %}}"
        assert render_text(template, names) == "[]"
        with pytest.raises(TemplateProblem):
            render_text(f"{{{{ {method}() }}}}", names)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ xs.__class__.__init__.__globals__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ obj.reveal() }}",
        "{{ fn([1]) }}",
        "{{ 'abc'.upper() }}",
        "{{ d.items() }}",
        "{{ (xs | list).append(3) }}",
        "{{ loop.__class__ }}",
        "{{ self.__class__ }}",
    ],
)
def test_calls_into_python_are_refused(template: str) -> None:
    with pytest.raises(TemplateProblem):
        render_text(template, context())


def test_a_template_cannot_change_the_data_it_reads() -> None:
    names = context()
    for template in (
        "{{ xs.append(3) }}",
        "{{ xs.clear() }}",
        "{{ d.clear() }}",
        "{{ d.update(b=2) }}",
    ):
        with pytest.raises(TemplateProblem):
            render_text(template, names)
    assert names["xs"] == [1, 2] and names["d"] == {"a": 1}


def test_objects_reach_templates_as_their_text_only() -> None:
    assert render_text("{{ obj }}|{{ obj.token }}", context()) == "a secretive object|"
    assert evaluate("{{ obj }}", context()) == "a secretive object"


@pytest.mark.parametrize(
    "template",
    [
        "{% include '/etc/passwd' %}",
        "{% extends 'base.sql' %}",
        "{% import 'macros.sql' as m %}",
        "{% from 'macros.sql' import m %}",
    ],
)
def test_no_files(template: str) -> None:
    with pytest.raises(TemplateProblem, match=r"non-existing template|does not exist"):
        render_text(template, {})


def test_huge_ranges_are_refused() -> None:
    with pytest.raises(TemplateProblem, match="too many elements"):
        render_text("{% for i in range(10**9) %}{% endfor %}", {})


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
        "{% set s = 'xxxxxxxx' %}" + "{% set s = s ~ s %}" * 40 + "{{ s | length }}",
        "{{ ('x' * 10**10) | length }}",
        "{% macro f(n) %}{{ f(n + 1) }}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    ],
)
def test_work_per_render_is_bounded(template: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateProblem, match=r"too much work|recursion|too large"):
        render_text(template, {})
    assert time.monotonic() - started < 10


def test_output_size_is_bounded() -> None:
    size = MAX_OUTPUT_CHARS + 1000
    with pytest.raises(TemplateProblem, match=r"^the template's output is .* over the limit"):
        render_text("{{ 'x' * n }}", {"n": size})
    with pytest.raises(TemplateProblem, match="over the limit"):
        render_sql("SELECT '{{ 'x' * n }}'", {"n": size})
    assert len(render_text("{{ 'x' * n }}", {"n": 1000})) == 1000


def test_limits_are_settings() -> None:
    loop = "{% for i in range(1000) %}{{ i }}{% endfor %}"
    try:
        set_limits(fuel=500, max_output_chars=50)
        with pytest.raises(TemplateProblem, match="more than 500 steps"):
            render_text(loop, {})
        with pytest.raises(TemplateProblem, match="over the limit of 50"):
            render_text("{{ 'x' * 51 }}", {})
        assert render_text("{{ 'x' * 50 }}", {}) == "x" * 50
    finally:
        set_limits()
    assert len(render_text(loop, {})) == sum(len(str(i)) for i in range(1000))
    with pytest.raises(ValueError, match="positive"):
        set_limits(fuel=0)
