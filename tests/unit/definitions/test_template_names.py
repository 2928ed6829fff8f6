"""Which template names ``quarry compile --check`` reports (template_names.py):
what the engine's own analysis says the template reads, minus what the file
defines as the runner scopes it."""

from __future__ import annotations

from quarry.definitions.kinds import Kind
from quarry.definitions.template_names import template_name_problems, used_names
from quarry.definitions.yaml_nodes import load_document


def _warned(path: str, kind: Kind, text: str) -> list[str]:
    root = load_document(path, text.encode()).root
    return [
        f"{p.line}:{p.column}: {p.message}" for p in template_name_problems(path, kind, root, text)
    ]


def test_names_bound_by_the_template_and_globals_are_not_reads() -> None:
    source = (
        "{% set total = 1 %}{{ total }}{% for row in rows %}{{ row.a }}{{ loop.index }}"
        "{% endfor %}{% macro m(x) %}{{ x }}{% endmacro %}{{ now() }} {{ range(2) }}"
        "{{ t.col | join(',') }}"
    )
    assert used_names(source) == {"rows", "t.col", "now", "range"}
    assert used_names("{{ unclosed") is None  # a syntax error is the runtime's to report


def test_workflow_scope_variables_tasks_nested_tasks_and_step() -> None:
    text = (
        "variables:\n  region: EU\n"
        "tasks:\n"
        "  - name: outer\n    type: loop_sequential\n    values: [1, 2]\n    tasks:\n"
        "      - name: inner\n        type: formatter\n"
        "        template: '{{ outer.value }} {{ region }} {{ step.key }} {{ controls.x }}'\n"
        "  - name: last\n    type: formatter\n"
        "    template: '{{ inner }} {{ innr }}'\n"
        "    description: '{{ not_a_template }}'\n"
        "consistency_prompt: '{{ submission_1 }}'\n"
    )
    assert _warned("w.workflow.yml", Kind.WORKFLOW, text) == [
        "13:31: template uses 'innr', which nothing in this file defines (no variable or "
        "task of that name; it renders as nothing); did you mean 'inner'?"
    ]


def test_app_controls_declared_at_the_top_or_inline() -> None:
    text = (
        "name: A\n"
        "controls:\n  - {name: region, type: select, options: [EU]}\n"
        "tasks:\n"
        "  - name: load\n    type: execute_sql\n    database: local\n"
        "    sql_query: select '{{ controls.region }}', '{{ controls.year }}', "
        "'{{ controls.yr }}'\n"
        "display:\n"
        "  - {type: control, name: year, control_type: select, options: [2024]}\n"
        "  - {type: markdown, content: '{{ load }}'}\n"
    )
    assert _warned("a.app.yml", Kind.APP, text) == [
        "8:75: template uses 'controls.yr', but this app has no control 'yr' "
        "(its controls: region, year); did you mean 'year'?"
    ]


def test_other_kinds_are_not_checked() -> None:
    text = "name: v\ndescription: '{{ x }}'\nsql: select {{ y }}\n"
    assert _warned("v.view.yml", Kind.VIEW, text) == []
