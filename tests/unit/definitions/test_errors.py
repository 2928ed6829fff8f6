"""Every problem in a file is reported, positioned at the offending node (1-based)."""

from __future__ import annotations

import pytest

from quarry.core.errors import CompileFailed
from quarry.definitions import parse_definition
from tests.unit.definitions.conftest import problems_of


def test_unknown_key_is_reported_at_the_key() -> None:
    assert problems_of(
        "w.workflow.yml",
        """\
        tasks:
          - name: load
            type: execute_sql
            database: local
            sql_query: select 1
            retries: 3
        """,
    ) == ["w.workflow.yml:6:5: unknown field 'retries'"]


def test_unknown_top_level_key() -> None:
    assert problems_of("config.yml", "databases: []\nmodels: []\nfoo: 1\n") == [
        "config.yml:3:1: unknown field 'foo'"
    ]


def test_wrong_type_is_reported_at_the_value() -> None:
    assert problems_of(
        "w.workflow.yml",
        """\
        tasks:
          - name: load
            type: execute_sql
            database: local
            sql_query: select 1
            dry_run_limit: lots
        """,
    ) == [
        "w.workflow.yml:6:20: tasks.0.dry_run_limit: "
        "input should be a valid integer, unable to parse string as an integer"
    ]


def test_missing_field_is_reported_at_the_mapping_that_lacks_it() -> None:
    assert problems_of(
        "w.workflow.yml",
        """\
        description: x
        tasks:
          - name: fmt
            type: formatter
        """,
    ) == ["w.workflow.yml:3:5: missing required field 'template'"]


def test_missing_top_level_field() -> None:
    assert problems_of("v.view.yml", "name: v\ndescription: d\ndimensions: []\n") == [
        "v.view.yml:1:1: missing required field 'entities'"
    ]


def test_bad_yaml_is_reported_with_its_position() -> None:
    assert problems_of("w.workflow.yml", "tasks:\n  - name: [a\n    type: x\n") == [
        "w.workflow.yml:3:9: invalid YAML: did not find expected ',' or ']' "
        "(while parsing a flow sequence)"
    ]


def test_bad_indentation() -> None:
    (problem,) = problems_of("w.workflow.yml", "tasks:\n  - name: a\n   type: b\n")
    assert problem.startswith(
        "w.workflow.yml:3:4: invalid YAML: did not find expected '-' indicator"
    )


@pytest.mark.parametrize(
    ("task_type", "column"),
    [("omni_query", 11), ("looker_query", 11), ("visualize", 11), ("exeucte_sql", 11)],
)
def test_unsupported_task_type_is_named_at_the_type_value(task_type: str, column: int) -> None:
    problems = problems_of(
        "w.workflow.yml",
        f"""\
        tasks:
          - name: q
            type: {task_type}
            topic: orders
        """,
    )
    assert problems == [
        f"w.workflow.yml:3:{column}: task type '{task_type}' is not supported yet "
        "(supported: agent, conditional, execute_sql, formatter, loop_sequential, "
        "semantic_query, workflow)"
    ]


def test_unsupported_display_kind_is_named_at_the_type_value() -> None:
    problems = problems_of(
        "d.app.yml",
        """\
        tasks: []
        display:
          - type: controls
            items: []
          - type: row
            children:
              - type: area_chart
                data: x
        """,
    )
    supported = "(supported: bar_chart, line_chart, markdown, pie_chart, row, table)"
    assert problems == [
        f"d.app.yml:3:11: display kind 'controls' is not supported yet {supported}",
        f"d.app.yml:7:15: display kind 'area_chart' is not supported yet {supported}",
    ]


def test_missing_type_is_a_normal_missing_field() -> None:
    assert problems_of("w.workflow.yml", "tasks:\n  - name: a\n    template: x\n") == [
        "w.workflow.yml:2:5: missing required field 'type'"
    ]


def test_task_that_is_not_a_mapping() -> None:
    assert problems_of("w.workflow.yml", "tasks:\n  - just text\n") == [
        "w.workflow.yml:2:5: expected a task: a mapping with a 'type' key"
    ]


def test_duplicate_key_is_an_error() -> None:
    assert problems_of(
        "w.workflow.yml",
        """\
        tasks:
          - name: a
            type: formatter
            template: x
            template: y
        """,
    ) == ["w.workflow.yml:5:5: duplicate key 'template' (first defined on line 4)"]


def test_errors_deep_inside_loops_and_conditionals_have_their_own_lines() -> None:
    problems = problems_of(
        "w.workflow.yml",
        """\
        tasks:
          - name: outer
            type: loop_sequential
            values: [1, 2]
            tasks:
              - name: inner
                type: loop_sequential
                values: "{{ x }}"
                tasks:
                  - name: deepest
                    type: execute_sql
                    database: local
                    sql_query: select 1
                    colour: red
              - name: branch
                type: conditional
                conditions:
                  - if: "{{ a }}"
                    tasks:
                      - name: c
                        type: formatter
                        template: [1]
                else:
                  - name: d
                    type: visualize
        """,
    )
    assert problems == [
        "w.workflow.yml:14:13: unknown field 'colour'",
        "w.workflow.yml:22:27: tasks.0.tasks.1.conditions.0.tasks.0.template: "
        "input should be a valid string",
        "w.workflow.yml:25:19: task type 'visualize' is not supported yet "
        "(supported: agent, conditional, execute_sql, formatter, loop_sequential, "
        "semantic_query, workflow)",
    ]


def test_all_problems_of_a_file_are_reported_sorted() -> None:
    problems = problems_of(
        "w.workflow.yml",
        """\
        tasks:
          - name: b
            type: nope
          - name: a
            type: execute_sql
            sql_file: x.sql
        bogus: true
        bogus: false
        """,
    )
    assert problems == [
        "w.workflow.yml:3:11: task type 'nope' is not supported yet (supported: agent, "
        "conditional, execute_sql, formatter, loop_sequential, semantic_query, workflow)",
        "w.workflow.yml:4:5: missing required field 'database'",
        "w.workflow.yml:8:1: duplicate key 'bogus' (first defined on line 7)",
        "w.workflow.yml:8:1: unknown field 'bogus'",
    ]


def test_compile_failed_carries_problems_with_positions() -> None:
    with pytest.raises(CompileFailed) as caught:
        parse_definition("w.workflow.yml", b"tasks:\n  - {name: a, type: formatter}\n")
    (problem,) = caught.value.problems
    assert (problem.path, problem.line, problem.column) == ("w.workflow.yml", 2, 5)
    assert caught.value.status_code == 422


def test_sql_task_needs_exactly_one_source() -> None:
    message = "an execute_sql task needs exactly one of 'sql_file' or 'sql_query'"
    both = "tasks:\n  - name: a\n    type: execute_sql\n    database: x\n"
    assert problems_of("w.workflow.yml", both) == [f"w.workflow.yml:2:5: tasks.0: {message}"]
    assert problems_of(
        "w.workflow.yml", both + "    sql_file: a.sql\n    sql_query: select 1\n"
    ) == [f"w.workflow.yml:2:5: tasks.0: {message}"]


def test_literal_choices_are_listed() -> None:
    assert problems_of(
        "w.workflow.yml", "tasks:\n  - {name: a, type: formatter, template: x, mode: later}\n"
    ) == ["w.workflow.yml:2:51: tasks.0.mode: input should be 'client' or 'server'"]


def test_unknown_database_type_lists_the_known_ones() -> None:
    (problem,) = problems_of(
        "config.yml", "databases:\n  - name: a\n    type: oracle\nmodels: []\n"
    )
    assert problem.startswith("config.yml:3:11: unknown type 'oracle' (expected one of: ")
    assert "'duckdb'" in problem
    assert "'postgres'" in problem


def test_model_vendor_discriminator() -> None:
    (problem,) = problems_of(
        "config.yml",
        "databases: []\nmodels:\n  - {name: m, vendor: mistral, model_ref: x, key_var: K}\n",
    )
    assert problem.startswith("config.yml:3:23: unknown vendor 'mistral' (expected one of: ")


def test_duckdb_needs_one_storage() -> None:
    assert problems_of(
        "config.yml",
        "databases:\n  - {name: a, type: duckdb, dataset: x, path: y}\nmodels: []\n",
    ) == [
        "config.yml:2:5: databases.0: a duckdb database needs exactly one of 'dataset' "
        "(a folder), 'path' (a database file) or 'data_path' (DuckLake)"
    ]


def test_routing_and_default_agents_reject_each_others_keys() -> None:
    assert problems_of("a.agent.yml", "model: m\nroutes: [x]\n") == [
        "a.agent.yml:1:1: missing required field 'system_instructions'",
        "a.agent.yml:2:1: unknown field 'routes'",
    ]
    assert problems_of("a.agent.yml", "type: routing\nmodel: m\nroutes: []\ntools: []\n") == [
        "a.agent.yml:4:1: unknown field 'tools'"
    ]
    assert problems_of("a.agent.yml", "type: planner\nmodel: m\n") == [
        "a.agent.yml:1:7: agent type 'planner' is not supported yet (supported: default, routing)"
    ]


def test_union_forms_give_one_error() -> None:
    assert problems_of("a.agentic.yml", "thinking: [1]\n") == [
        "a.agentic.yml:1:11: thinking: expected 'adaptive', 'disabled', 'effort:<level>', "
        "{budget_tokens: <n>} or {effort: <level>}"
    ]
    assert problems_of(
        "w.workflow.yml", "tasks:\n  - {name: l, type: loop_sequential, values: 3, tasks: []}\n"
    ) == [
        "w.workflow.yml:2:46: tasks.0.values: "
        "expected a list of values or a template string that renders to one"
    ]


def test_topic_filter_needs_one_operator() -> None:
    assert problems_of(
        "t.topic.yml",
        """\
        name: t
        description: d
        views: [a]
        default_filters:
          - field: x
            eq: {value: 1}
            neq: {value: 2}
        """,
    ) == [
        "t.topic.yml:5:5: default_filters.0: a topic filter needs exactly one operator of: "
        "eq, neq, gt, gte, lt, lte, in, not_in, in_date_range, not_in_date_range"
    ]


def test_duplicate_names_within_one_file() -> None:
    assert problems_of(
        "config.yml",
        """\
        databases:
          - {name: local, type: duckdb, dataset: a}
          - {name: local, type: duckdb, dataset: b}
        models: []
        """,
    ) == ["config.yml:3:12: duplicate database name 'local' (first used on line 2)"]
    assert problems_of(
        "w.workflow.yml",
        """\
        tasks:
          - {name: a, type: formatter, template: x}
          - name: loop
            type: loop_sequential
            values: [1]
            tasks:
              - {name: a, type: formatter, template: x}
              - {name: a, type: formatter, template: y}
        """,
    ) == ["w.workflow.yml:8:16: duplicate task name 'a' (first used on line 7)"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "w.workflow.yml:1:1: the file is empty"),
        (b"# only a comment\n", "w.workflow.yml:1:1: the file is empty"),
        (b"- a\n- b\n", "w.workflow.yml:1:1: the top level must be a mapping of keys"),
        (b"just text\n", "w.workflow.yml:1:1: the top level must be a mapping of keys"),
        (b"tasks: []\n---\ntasks: []\n", "w.workflow.yml:2:1: invalid YAML: but found another"),
        (b"tasks: []\ndescription: \xff\n", "w.workflow.yml:2:14: the file is not valid UTF-8"),
        (b"tasks: !!python/object:os.system []\n", "w.workflow.yml:1:8: invalid YAML: could not"),
        (b"tasks: []\ndescription: !!int ten\n", "w.workflow.yml:2:14: invalid YAML: 'ten' is not"),
        (
            b"tasks:\n  - {name: l, type: loop_sequential, values: [.nan], tasks: []}\n",
            "w.workflow.yml:2:47: unsupported number '.nan' (not finite)",
        ),
    ],
)
def test_file_level_problems(data: bytes, expected: str) -> None:
    (problem,) = problems_of("w.workflow.yml", data)
    assert problem.startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1: x\ntasks: []\n", "w.workflow.yml:1:1: key '1' must be text (quote it)"),
        ("tasks: []\n~: x\n", "w.workflow.yml:2:1: key '~' must be text (quote it)"),
        (
            "tasks:\n  - name: a\n    type: formatter\n    template: x\n    1.5: y\n",
            "w.workflow.yml:5:5: key '1.5' must be text (quote it)",
        ),
    ],
)
def test_keys_that_are_not_text(text: str, expected: str) -> None:
    assert problems_of("w.workflow.yml", text) == [expected]


def test_merge_keys_are_followed_for_positions() -> None:
    assert problems_of(
        "w.workflow.yml",
        """\
        tasks:
          - &base
            name: a
            type: formatter
            template: x
          - <<: *base
            name: b
            colour: red
        """,
    ) == ["w.workflow.yml:8:5: unknown field 'colour'"]


def test_not_a_definition_path_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not a definition file"):
        parse_definition("queries/a.sql", b"select 1")
