"""Each task of a workflow or app gets its own position at parse time: where its
mapping starts in the file (issue #18), nested tasks included, keyed as the runner
keys its steps, so a failed step names the line of the task that failed."""

from __future__ import annotations

import pytest

from quarry.core.errors import CompileFailed
from quarry.definitions.parse import parse_definition
from quarry.definitions.task_positions import positions_from_json, positions_json

NESTED = b"""\
description: every kind of nesting
tasks:
  - name: intro
    type: formatter
    template: hello

  - name: each
    type: loop_sequential
    values: [1, 2]
    tasks:
      - name: say
        type: formatter
        template: "{{ value }}"
      - name: query
        type: execute_sql
        # a comment, then the reference three lines below the task's start

        database: local
        sql_query: select 1

  - type: conditional
    name: branch
    conditions:
      - if: "{{ true }}"
        tasks:
          - name: inner_loop
            type: loop_sequential
            values: [1]
            tasks:
              - {name: deep, type: formatter, template: deep}
    else:
      - name: otherwise
        type: formatter
        template: no
"""


def test_every_task_nested_or_not_has_its_own_line_and_column() -> None:
    parsed = parse_definition("workflows/nested.workflow.yml", NESTED)
    assert parsed.tasks == {
        "tasks.0": (3, 5),
        "tasks.1": (7, 5),
        "tasks.1.tasks.0": (11, 9),
        "tasks.1.tasks.1": (14, 9),  # its own line, not its database's (line 18)
        "tasks.2": (21, 5),  # where the mapping starts, whatever key comes first
        "tasks.2.if.0.tasks.0": (26, 13),
        "tasks.2.if.0.tasks.0.tasks.0": (30, 17),  # a flow mapping: at its brace
        "tasks.2.else.tasks.0": (32, 9),
    }
    database = next(r for r in parsed.refs if r.field == "tasks.1.tasks.1.database")
    assert database.line == 18


def test_an_app_has_positions_and_other_kinds_none() -> None:
    app = parse_definition(
        "apps/a.app.yml",
        b"tasks:\n  - name: t\n    type: formatter\n    template: x\ndisplay: []\n",
    )
    assert app.tasks == {"tasks.0": (2, 5)}
    view = parse_definition(
        "semantics/views/v.view.yml",
        b"name: v\ntable: t\ndatasource: local\nentities: []\ndimensions: []\nmeasures: []\n",
    )
    assert view.tasks == {}


def test_a_task_merged_from_another_is_placed_where_it_is_written() -> None:
    parsed = parse_definition(
        "workflows/a.workflow.yml",
        b"tasks:\n  - &first\n    name: a\n    type: formatter\n    template: x\n"
        b"  - <<: *first\n    name: b\n",
    )
    assert parsed.tasks == {"tasks.0": (2, 5), "tasks.1": (6, 5)}


def test_positions_round_trip_as_stored() -> None:
    parsed = parse_definition("workflows/nested.workflow.yml", NESTED)
    text = positions_json(parsed.tasks)
    assert positions_from_json(text) == parsed.tasks
    assert positions_json({}) == "" and positions_from_json("") == {}
    assert positions_from_json('{"tasks.0": [1], "tasks.1": [2, 3]}') == {"tasks.1": (2, 3)}


def test_a_file_that_does_not_validate_still_fails_as_before() -> None:
    with pytest.raises(CompileFailed):
        parse_definition("workflows/bad.workflow.yml", b"tasks:\n  - name: t\n")
