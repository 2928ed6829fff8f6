"""Every problem in a file is reported, positioned at the offending node (1-based)."""

from __future__ import annotations

import pytest

from quarry.core.errors import CompileFailed
from quarry.definitions import parse_definition
from tests.unit.definitions.conftest import parse_text, problems_of, warnings_of


def test_unknown_key_of_a_task_is_a_warning_at_the_key() -> None:
    # Oxy reads tasks without deny_unknown_fields: the key is ignored, with a warning.
    assert warnings_of(
        "w.workflow.yml",
        """\
        tasks:
          - name: load
            type: execute_sql
            database: local
            sql_query: select 1
            retries: 3
        """,
    ) == ["w.workflow.yml:6:5: warning: unknown field 'retries' is ignored (as Oxy ignores it)"]


def test_unknown_top_level_key_is_an_error_with_a_did_you_mean() -> None:
    # config.yml, workflows and apps are read with deny_unknown_fields in Oxy.
    assert problems_of("config.yml", "databases: []\nmodels: []\nfoo: 1\n") == [
        "config.yml:3:1: unknown field 'foo'"
    ]
    assert problems_of("config.yml", "databases: []\ndefault:\n  database: x\n") == [
        "config.yml:2:1: unknown field 'default'; did you mean 'defaults'?"
    ]
    assert problems_of("w.workflow.yml", "tasks: []\ndescripton: x\n") == [
        "w.workflow.yml:2:1: unknown field 'descripton'; did you mean 'description'?"
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


def test_task_types_quarry_does_not_run_are_read_with_a_warning_at_the_type() -> None:
    assert warnings_of(
        "w.workflow.yml",
        """\
        tasks:
          - name: q
            type: visualize
            prompt: a chart
        """,
    ) == [
        "w.workflow.yml:3:11: warning: Quarry does not run 'visualize' tasks yet "
        "(a run stops at this task)"
    ]


def test_task_types_quarry_does_not_run_are_still_validated() -> None:
    assert problems_of(
        "w.workflow.yml",
        "tasks:\n  - {name: q, type: omni_query, topic: orders}\n",
    ) == ["w.workflow.yml:2:5: missing required field 'integration'"]


def test_unknown_task_type_is_a_warning_with_a_did_you_mean() -> None:
    # Oxy's TaskType has #[serde(other)]: an unknown type is accepted (and skipped).
    assert warnings_of(
        "w.workflow.yml",
        """\
        tasks:
          - name: q
            type: exeucte_sql
            topic: orders
        """,
    ) == [
        "w.workflow.yml:3:11: warning: unknown task type 'exeucte_sql' (Oxy accepts and "
        "skips it; Quarry cannot run it); did you mean 'execute_sql'?"
    ]


def test_unknown_display_kind_is_an_error_with_a_did_you_mean() -> None:
    problems = problems_of(
        "d.app.yml",
        """\
        tasks: []
        display:
          - type: controls
            items: []
          - type: row
            children:
              - type: bar_chrat
                data: x
              - type: area_chart
                data: x
        """,
    )
    kinds = (
        "(expected one of: bar_chart, control, controls, line_chart, markdown, pie_chart, "
        "row, table)"
    )
    assert problems == [
        f"d.app.yml:7:15: unknown display type 'bar_chrat'; did you mean 'bar_chart'? {kinds}",
        f"d.app.yml:9:15: unknown display type 'area_chart'; did you mean 'bar_chart'? {kinds}",
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


TEXT_DEEP = """\
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
"""


def test_errors_deep_inside_loops_and_conditionals_have_their_own_lines() -> None:
    problems = problems_of("w.workflow.yml", TEXT_DEEP)
    # A file with errors reports its errors; its warnings follow once it validates.
    assert problems == [
        "w.workflow.yml:22:27: tasks.0.tasks.1.conditions.0.tasks.0.template: "
        "input should be a valid string",
    ]
    fixed = parse_text("w.workflow.yml", TEXT_DEEP.replace("template: [1]", "template: x"))
    assert [str(w) for w in fixed.warnings] == [
        "w.workflow.yml:14:13: warning: unknown field 'colour' is ignored (as Oxy ignores it)",
        "w.workflow.yml:25:19: warning: Quarry does not run 'visualize' tasks yet "
        "(a run stops at this task)",
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


def test_sql_task_needs_a_source_and_prefers_sql_file_as_oxy_does() -> None:
    message = "an execute_sql task needs one of 'sql_file' or 'sql_query'"
    task = "tasks:\n  - name: a\n    type: execute_sql\n    database: x\n"
    assert problems_of("w.workflow.yml", task) == [f"w.workflow.yml:2:5: tasks.0: {message}"]
    both = task + "    sql_file: a.sql\n    sql_query: select 1\n"
    parsed = parse_text("w.workflow.yml", both)
    assert [str(w) for w in parsed.warnings] == [
        "w.workflow.yml:6:16: warning: 'sql_query' is ignored: Oxy runs 'sql_file' "
        "when both are given"
    ]
    assert "sql_query" not in parsed.body["tasks"][0]


def test_literal_choices_are_listed() -> None:
    assert problems_of(
        "w.workflow.yml", "tasks:\n  - {name: a, type: formatter, template: x, mode: later}\n"
    ) == ["w.workflow.yml:2:51: tasks.0.mode: input should be 'client' or 'server'"]


def test_unknown_database_type_lists_the_known_ones() -> None:
    (problem,) = problems_of(
        "config.yml", "databases:\n  - name: a\n    type: oracle\nmodels: []\n"
    )
    assert problem.startswith("config.yml:3:11: unknown database type 'oracle' (expected one of: ")
    assert "'duckdb'" in problem
    assert "'postgres'" in problem


def test_model_vendor_discriminator() -> None:
    (problem,) = problems_of(
        "config.yml",
        "databases: []\nmodels:\n  - {name: m, vendor: mistral, model_ref: x, key_var: K}\n",
    )
    assert problem.startswith("config.yml:3:23: unknown model vendor 'mistral' (expected one of: ")


def test_duckdb_needs_a_storage_and_prefers_dataset_as_oxy_does() -> None:
    assert problems_of("config.yml", "databases:\n  - {name: a, type: duckdb}\n") == [
        "config.yml:2:5: databases.0: a duckdb database needs one of 'dataset' "
        "(a folder), 'path' (a database file) or 'data_path' (DuckLake)"
    ]
    both = "databases:\n  - {name: a, type: duckdb, dataset: x, path: y}\n"
    parsed = parse_text("config.yml", both)
    assert [str(w) for w in parsed.warnings] == [
        "config.yml:2:47: warning: 'path' is ignored: Oxy uses 'dataset' when both are given"
    ]
    assert parsed.body["databases"][0] == {"name": "a", "type": "duckdb", "dataset": "x"}


def test_routing_and_default_agents_warn_about_each_others_keys() -> None:
    # Oxy reads agents without deny_unknown_fields: the other kind's keys are ignored.
    assert problems_of("a.agent.yml", "model: m\nroutes: [x]\n") == [
        "a.agent.yml:1:1: missing required field 'system_instructions'",
    ]
    assert warnings_of("a.agent.yml", "type: routing\nmodel: m\nroutes: []\ntools: []\n") == [
        "a.agent.yml:4:1: warning: unknown field 'tools' is ignored (as Oxy ignores it)"
    ]
    # Any type but "routing" is a default agent in Oxy.
    assert warnings_of("a.agent.yml", "type: planner\nmodel: m\nsystem_instructions: x\n") == [
        "a.agent.yml:1:7: warning: agent type 'planner' is read as a default agent, as Oxy "
        "reads it (the agent types are: default, routing)"
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
    assert warnings_of(
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
    ) == ["w.workflow.yml:8:5: warning: unknown field 'colour' is ignored (as Oxy ignores it)"]


def test_not_a_definition_path_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not a definition file"):
        parse_definition("queries/a.sql", b"select 1")
