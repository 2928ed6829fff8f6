"""A corpus of templates with the output Oxy gives, written by hand from Oxy's
renderer (``crates/core/src/execute/renderer.rs``: ``Environment::new()`` with its
lenient undefined behaviour, the ``now`` global, the ``sqlquote`` and ``tojson``
filters) and minijinja 2.x as Oxy 0.5.51 ships it (Rust's printing of values:
``true``, ``[1, "a"]``, ``100000000000000000000.0``). Each case names the construct
it covers; ``test_template_corpus.py`` renders them all through Quarry.

``KNOWN_DIFFERENCES`` lists, with the reason, the few places where Quarry's output
is not Oxy's; those cases assert Quarry's output so a change is noticed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa

from quarry.runtime.engine.results import ListOutput, TableOutput, TextOutput
from quarry.runtime.engine.views import LoopValue, to_view


@dataclass(frozen=True)
class Case:
    name: str
    template: str
    expected: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    pattern: str | None = None  # a regular expression the whole output must match
    error: str | None = None  # a text the error must contain
    strict: bool = False


def _table() -> Any:
    return to_view(TableOutput(pa.table({"region": ["East", "West"], "n": [1, 2]})))


def _loop_output() -> Any:
    return to_view(
        ListOutput(
            (
                {"get_number_of_animals": TextOutput("10")},
                {"get_number_of_animals": TextOutput("20")},
            )
        )
    )


ROWS = [{"n": 1, "ok": True}, {"n": 2, "ok": False}]

CORPUS: list[Case] = [
    # --- variables and Oxy's lenient undefined ------------------------------------
    Case("variable", "Hello {{ name }}!", "Hello World!", {"name": "World"}),
    Case("undefined prints nothing", "[{{ missing }}]", "[]"),
    Case("undefined is false in if", "{% if missing %}yes{% else %}no{% endif %}", "no"),
    Case("is defined on undefined", "{{ missing is defined }}", "false"),
    Case("is undefined", "{{ missing is undefined }}", "true"),
    Case(
        "loop over undefined runs zero times", "{% for x in missing %}{{ x }}{% endfor %}ok", "ok"
    ),
    Case("attribute of undefined is an error", "{{ missing.attr }}", error="undefined"),
    Case("default filter", "{{ missing | default('fallback') }}", "fallback"),
    Case("undefined concatenated", "{{ missing ~ 'x' }}", "x"),
    Case("undefined or", "{{ missing or 'dflt' }}", "dflt"),
    Case("undefined key of a map", "[{{ m.nope }}]", "[]", {"m": {"a": 1}}),
    Case("undefined index of a list", "[{{ xs[5] }}]", "[]", {"xs": [1]}),
    Case("if without else", "[{{ 'a' if missing }}]", "[]"),
    # --- comparisons ------------------------------------------------------------------
    Case("none > 15 is false", "{{ none > 15 }}", "false"),
    Case("undefined > 15 is false", "{{ missing > 15 }}", "false"),
    Case("none > 15 in if", "{% if none > 15 %}big{% else %}small{% endif %}", "small"),
    Case("number comparison", "{{ 3 > 2 }} {{ 1 == 1.0 }} {{ '1' == 1 }}", "true true false"),
    Case("string comparison", "{{ 'a' < 'b' }}", "true"),
    Case("list equality", "{{ [1, 2] == [1, 2] }} {{ xs == [1, 2] }}", "true true", {"xs": [1, 2]}),
    Case(
        "in operator",
        "{{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }}",
        "true true true",
    ),
    # --- numbers ------------------------------------------------------------------------
    Case(
        "integer arithmetic",
        "{{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 10 - 3 * 2 }}",
        "3 1 1024 4",
    ),
    Case("division gives a float", "{{ 7 / 2 }} {{ 4 / 2 }}", "3.5 2.0"),
    Case(
        "floats print as Rust does",
        "{{ 1.0 }} {{ 2.50 }} {{ 1e20 }} {{ 0.1 + 0.2 }}",
        "1.0 2.5 100000000000000000000.0 0.30000000000000004",
    ),
    Case("small float", "{{ 1e-7 }}", "0.0000001"),
    Case(
        "floats inside a list print in debug form",
        "{{ [1e-7, 100.5, 2.5e-5] }}",
        "[1e-7, 100.5, 2.5e-5]",
    ),
    Case("whole floats of the data inside a list", "{{ xs }}", "[2.0, 1e16]", {"xs": [2.0, 1e16]}),
    Case("float from the context", "{{ x }}", "1.5", {"x": 1.5}),
    Case("round", "{{ 3.14159 | round(2) }}", "3.14"),
    Case("int and float filters", "{{ '42' | int + 1 }} {{ '2.5' | float }}", "43 2.5"),
    Case("abs", "{{ (-5) | abs }}", "5"),
    # --- how values print -----------------------------------------------------------
    Case(
        "booleans print lower case",
        "{{ flag }} {{ true }} {{ false }}",
        "true true false",
        {"flag": True},
    ),
    Case("list literal", "{{ [1, 'a', none, true, 2.5] }}", '[1, "a", none, true, 2.5]'),
    Case(
        "list literal of numbers keeps whole floats",
        "{{ [100.0] }} {{ [1, 2.5, -0.0, [3.0, 4]] }}",
        "[100.0] [1, 2.5, -0.0, [3.0, 4]]",
    ),
    Case("map literal", "{{ {'a': 1, 'b': [true, none]} }}", '{"a": 1, "b": [true, none]}'),
    Case("list from the context", "{{ xs }}", '[1, "a"]', {"xs": [1, "a"]}),
    Case("map from the context", "{{ m }}", '{"k": "v", "n": 2}', {"m": {"k": "v", "n": 2}}),
    Case("quotes inside a printed list", "{{ ['a\"b', \"it's\"] }}", '["a\\"b", "it\'s"]'),
    Case("string literal escapes", '{{ "quote\\"d" }}', 'quote"d'),
    Case(
        "date from the data prints as ISO text", "{{ d }}", "2024-01-31", {"d": date(2024, 1, 31)}
    ),
    # --- string filters -----------------------------------------------------------------
    Case("title", "{{ 'hello world' | title }}", "Hello World"),
    Case("upper lower", "{{ 'Hello' | upper }} {{ 'Hello' | lower }}", "HELLO hello"),
    Case("trim", "[{{ '  x  ' | trim }}]", "[x]"),
    Case("split and join", "{{ 'a,b,c' | split(',') | join('|') }}", "a|b|c"),
    Case("replace", "{{ 'abc' | replace('b', 'X') }}", "aXc"),
    Case("capitalize", "{{ 'hello' | capitalize }}", "Hello"),
    Case("indent", "{{ 'a\nb' | indent(2) }}", "a\n  b"),
    Case(
        "length",
        "{{ [1, 2, 3] | length }} {{ 'abcd' | length }} {{ m | length }}",
        "3 4 1",
        {"m": {"a": 1}},
    ),
    Case(
        "slicing",
        "{{ [1, 2, 3][1:] }} {{ 'hello'[1:3] }} {{ xs[-1] }}",
        "[2, 3] el 9",
        {"xs": [7, 9]},
    ),
    # --- list filters -----------------------------------------------------------------
    Case("sort", "{{ [3, 1, 2] | sort | join(',') }} {{ [3, 1, 2] | sort }}", "1,2,3 [1, 2, 3]"),
    Case(
        "sum first last",
        "{{ [1, 2, 3] | sum }} {{ [1, 2, 3] | first }} {{ [1, 2, 3] | last }}",
        "6 1 3",
    ),
    Case(
        "reverse and unique",
        "{{ [1, 2, 3] | reverse | list }} {{ [1, 2, 2, 3] | unique | list }}",
        "[3, 2, 1] [1, 2, 3]",
    ),
    Case("map attribute", "{{ rows | map(attribute='n') | list }}", "[1, 2]", {"rows": ROWS}),
    Case(
        "selectattr",
        "{{ rows | selectattr('ok') | map(attribute='n') | join(',') }}",
        "1",
        {"rows": ROWS},
    ),
    Case(
        "rejectattr",
        "{{ rows | rejectattr('ok') | map(attribute='n') | join(',') }}",
        "2",
        {"rows": ROWS},
    ),
    Case("select with a test", "{{ [1, 2, 3, 4] | select('even') | list }}", "[2, 4]"),
    Case("dictsort", "{{ {'b': 2, 'a': 1} | dictsort }}", '[["a", 1], ["b", 2]]'),
    Case(
        "items",
        "{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}={{ v }};{% endfor %}",
        "a=1;b=2;",
    ),
    Case(
        "items of a context map",
        "{% for k, v in m | items %}{{ k }}={{ v }};{% endfor %}",
        "x=1;",
        {"m": {"x": 1}},
    ),
    Case("batch", "{{ [1, 2, 3, 4, 5] | batch(2) | list }}", "[[1, 2], [3, 4], [5]]"),
    Case("min max", "{{ [4, 2, 8] | min }} {{ [4, 2, 8] | max }}", "2 8"),
    # --- tests ------------------------------------------------------------------------
    Case("is none", "{{ x is none }}", "true", {"x": None}),
    Case(
        "number tests", "{{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }}", "true true true"
    ),
    Case(
        "type tests",
        "{{ 'a' is string }} {{ 1 is number }} {{ [1] is sequence }} {{ {} is mapping }}",
        "true true true true",
    ),
    # --- tojson (Oxy's own: serde_json, compact) -----------------------------------
    Case(
        "tojson of a map",
        "{{ x | tojson }}",
        '{"a":[1,2.5,null,"é<"]}',
        {"x": {"a": [1, 2.5, None, "é<"]}},
    ),
    Case("tojson of a string", "{{ 'a\"b' | tojson }}", '"a\\"b"'),
    Case(
        "tojson of floats",
        "{{ 1e20 | tojson }} {{ 0.00001 | tojson }} {{ 1e-7 | tojson }}",
        "1e20 0.00001 1e-7",
    ),
    Case("tojson of a list", "{{ [1, 2] | tojson }} {{ true | tojson }}", "[1,2] true"),
    Case("tojson takes no indent", "{{ [1] | tojson(indent=2) }}", error="tojson"),
    # --- sqlquote (Oxy's: the value's text in quotes, quotes doubled) --------------
    Case("sqlquote of a string", "{{ name | sqlquote }}", "'O''Brien'", {"name": "O'Brien"}),
    Case("sqlquote of an integer", "{{ 42 | sqlquote }}", "'42'"),
    Case(
        "sqlquote of floats",
        "{{ 1.5 | sqlquote }} {{ (0.1 + 0.2) | sqlquote }} {{ 1e-7 | sqlquote }}",
        "'1.5' '0.30000000000000004' '0.0000001'",
    ),
    Case("sqlquote of booleans", "{{ true | sqlquote }} {{ false | sqlquote }}", "'true' 'false'"),
    Case("sqlquote of undefined", "{{ missing | sqlquote }}", "''"),
    Case("sqlquote of empty text", "{{ '' | sqlquote }}", "''"),
    Case("sqlquote of a list", "{{ ['a', \"b'c\", 3] | sqlquote }}", "'[\"a\", \"b''c\", 3]'"),
    Case("sqlquote of a map", "{{ {'k': 'v'} | sqlquote }}", '\'{"k": "v"}\''),
    Case("sqlquote of a date", "{{ d | sqlquote }}", "'2024-01-31'", {"d": date(2024, 1, 31)}),
    Case(
        "sqlquote of a control value",
        "{{ controls.store | sqlquote }}",
        "'Main St'",
        {"controls": {"store": "Main St"}},
    ),
    Case(
        "sqlquote of a date control",
        "WHERE d >= {{ controls.start_date | sqlquote }}",
        "WHERE d >= '2024-01-01'",
        {"controls": {"start_date": "2024-01-01"}},
    ),
    Case(
        "nested lookups as in an agent's database context",
        "{% for t in databases.primary[0].tables %}{{ t }};{% endfor %}",
        "a;b;",
        {"databases": {"primary": [{"tables": ["a", "b"]}]}},
    ),
    Case("sqlquote takes no argument", "{{ 'a' | sqlquote(1) }}", error="sqlquote"),
    Case(
        "sqlquote over a list with map",
        "{{ xs | map('sqlquote') | join(', ') }}",
        "'a', 'b''c'",
        {"xs": ["a", "b'c"]},
    ),
    # --- now() ------------------------------------------------------------------------
    Case("now with fmt", "{{ now(fmt='%Y-%m-%d') }}", pattern=r"\d{4}-\d{2}-\d{2}"),
    Case(
        "now utc with fmt",
        "{{ now(utc=true, fmt='%Y-%m-%d %H:%M:%S') }}",
        pattern=r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}",
    ),
    Case(
        "now RFC 3339",
        "{{ now() }}",
        pattern=r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?[+-]\d\d:\d\d",
    ),
    Case(
        "now utc RFC 3339",
        "{{ now(utc=true) }}",
        pattern=r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?\+00:00",
    ),
    Case(
        "now full date",
        "{{ now(fmt='%A, %B %d, %Y') }}",
        pattern=r"[A-Z][a-z]+day, [A-Z][a-z]+ \d\d, \d{4}",
    ),
    Case(
        "now as a year number (a control's options in Oxy's docs)",
        "{{ now(fmt='%Y') | int - 1 }}",
        pattern=r"\d{4}",
    ),
    Case("now takes keywords only", "{{ now('%Y') }}", error="keyword"),
    Case("now refuses unknown keywords", "{{ now(format='%Y') }}", error="format"),
    # --- loops --------------------------------------------------------------------------
    Case(
        "loop variables",
        "{% for x in [1, 2, 3] %}{{ loop.index }}:{{ x }}"
        "{% if not loop.last %},{% endif %}{% endfor %}",
        "1:1,2:2,3:3",
    ),
    Case("for else", "{% for x in [] %}a{% else %}empty{% endfor %}", "empty"),
    Case("range", "{% for x in range(3) %}{{ x }}{% endfor %}", "012"),
    Case("loop value", "{{ loop_regions.value }}", "East", {"loop_regions": LoopValue("East", 0)}),
    Case(
        "loop value quoted",
        "region = {{ loop_regions.value | sqlquote }}",
        "region = 'East'",
        {"loop_regions": LoopValue("East", 0)},
    ),
    Case(
        "loop value that is a row",
        "{{ it.value.region }}",
        "West",
        {"it": LoopValue({"region": "West"}, 1)},
    ),
    Case(
        "loop outputs afterwards",
        "{% for animal in loop_through_animals %}{{ animal.get_number_of_animals }};{% endfor %}",
        "10;20;",
        {"loop_through_animals": _loop_output()},
    ),
    Case(
        "rows of a table",
        "{% for row in t %}{{ row.region }}={{ row.n }};{% endfor %}",
        "East=1;West=2;",
        {"t": _table()},
    ),
    Case(
        "column of a table",
        "{{ t.region }} {{ t.region | join(', ') }}",
        '["East", "West"] East, West',
        {"t": _table()},
    ),
    Case("row of a table", "{{ t[0].n }} {{ t | length }}", "1 2", {"t": _table()}),
    Case(
        "table prints as Markdown",
        "{{ t }}",
        "| region | n |\n|---|---|\n| East | 1 |\n| West | 2 |",
        {"t": _table()},
    ),
    # --- conditionals -------------------------------------------------------------------
    Case("if elif else", "{% if x > 1 %}a{% elif x == 1 %}b{% else %}c{% endif %}", "b", {"x": 1}),
    Case("inline if", "{{ 'yes' if flag else 'no' }}", "yes", {"flag": True}),
    # --- whitespace -----------------------------------------------------------------------
    Case("whitespace control", "a  {{- ' b ' -}}  c", "a b c"),
    Case("block whitespace control", "{% for x in [1, 2] -%}\n{{ x }}\n{%- endfor %}", "12"),
    Case("final newline dropped", "line\n", "line"),
    Case("blocks keep their newlines", "{% if true %}\nx\n{% endif %}\n", "\nx\n"),
    # --- statements -----------------------------------------------------------------------
    Case("macro", "{% macro greet(n) %}Hi {{ n }}{% endmacro %}{{ greet('Ann') }}", "Hi Ann"),
    Case("set", "{% set x = 5 %}{{ x * 2 }}", "10"),
    Case(
        "namespace",
        "{% set ns = namespace(total=0) %}{% for v in [1, 2, 3] %}"
        "{% set ns.total = ns.total + v %}{% endfor %}{{ ns.total }}",
        "6",
    ),
    Case("with", "{% with a = 1 %}{{ a }}{% endwith %}", "1"),
    Case("filter block", "{% filter upper %}abc{% endfilter %}", "ABC"),
    Case("dict global", "{{ dict(a=1).a }}", "1"),
    Case("comment", "{# note #}x", "x"),
    Case("raw", "{% raw %}{{ x }}{% endraw %}", "{{ x }}"),
    # --- no auto-escaping: Oxy renders workflow fields with render_str ("<string>") --
    Case(
        "text ending in .json is not escaped",
        "{{ x }} see data.json",
        'a"b see data.json',
        {"x": 'a"b'},
    ),
    Case("text ending in .html is not escaped", "{{ x }}.html", "<b>.html", {"x": "<b>"}),
    Case(
        "a templated path",
        "workflows/{{ which }}.workflow.yml",
        "workflows/a.workflow.yml",
        {"which": "a"},
    ),
    # --- what Oxy does not have ---------------------------------------------------------
    Case("no contrib filters", "{{ 'abc' | truncate(2) }}", error="unknown"),
    Case("no Python methods", "{{ 'abc'.upper() }}", error="upper"),
    Case("no contrib globals", "{{ cycler(1, 2) }}", error="cycler"),
    Case("no include", "{% include 'other.sql' %}", error="non-existing template"),
    Case("no import", "{% import 'm.sql' as m %}", error="non-existing template"),
    # --- strict mode (Quarry's opt-in) ---------------------------------------------------
    Case(
        "strict: undefined is an error",
        "{{ missing }}",
        error="`missing` is undefined",
        strict=True,
    ),
    Case(
        "strict: undefined in if is an error",
        "{% if missing %}y{% endif %}",
        error="missing",
        strict=True,
    ),
    # --- loop controls: Oxy's minijinja is built without them (a syntax error) -----
    Case(
        "no loop controls",
        "{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}",
        error="unknown statement continue (line 1",
    ),
    Case(
        "no break",
        "{% for x in [1] %}\n{%- break -%}\n{% endfor %}",
        error="statement break (line 2",
    ),
    Case(
        "loop control words in raw, comments and text are text",
        "{% raw %}{% break %}{% endraw %}{# {% continue %} #} break continue",
        "{% break %} break continue",
    ),
    Case("strict: default still works", "{{ missing | default('x') }}", "x", strict=True),
    Case("strict: is defined still works", "{{ missing is defined }}", "false", strict=True),
    Case("strict: defined names render", "{{ a }}", "1", {"a": 1}, strict=True),
]

KNOWN_DIFFERENCES: list[tuple[Case, str, str]] = [
    (
        Case("none prints", "{{ none }}", "None"),
        "none",
        "the binding hands Quarry's printer None for both none and an undefined name; "
        "the engine (a later minijinja than Oxy's) prints none as None",
    ),
    (
        Case("sqlquote of none", "{{ none | sqlquote }}", "''"),
        "'none'",
        "a filter receives None for both none and undefined; undefined ('') is the common case",
    ),
    (
        Case(
            "booleans turned to text inside the engine",
            "{{ true ~ '' }} {{ [true] | join(',') }}",
            "True True",
        ),
        "true true",
        "string concatenation and join use the engine's own text (Python-style since "
        "minijinja 2.2x)",
    ),
    (
        Case(
            "whole floats passed to a filter",
            "{{ 2.0 | sqlquote }} {{ [true, 100.0] }}",
            "'2' [true, 100]",
        ),
        "'2.0' [true, 100.0]",
        "the binding hands Python a float with no fraction as an integer; a list of "
        "numbers alone is printed by the engine, which keeps the .0, a list also holding "
        "text, booleans or none is printed by Quarry (the engine would print 'a', True)",
    ),
]
