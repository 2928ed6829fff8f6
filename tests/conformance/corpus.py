"""The conformance corpus: workspaces written to cover every construct of Oxy's
formats, and what Quarry must say about each (exact file:line:col and severity).

``workspaces/full`` holds one of every task type, display kind, control type,
database type, model vendor, agent tool type and top-level key of Oxy's formats,
plus the Oxy file kinds Quarry does not read; it compiles with exactly
:data:`FULL_WARNINGS`. :data:`BROKEN` are small workspaces Oxy would refuse, each
with every problem Quarry must report.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

WORKSPACES = Path(__file__).parent / "workspaces"
FULL = WORKSPACES / "full"


def _not_run(line: int, tool: str, kind: str) -> str:
    return (
        f"agents/analyst.agent.yml:{line}:11: warning: tool '{tool}' ({kind}) is not run by "
        "Quarry yet: it is offered to no model"
    )


FULL_WARNINGS = [
    ".databases/:1:1: warning: Oxy's database schema files (.databases/, written by "
    "`oxy sync`): Quarry does not read these yet; not compiled",
    # Agent tools Quarry does not run (#17): offered to no model.
    _not_run(45, "create_data_app", "create_data_app"),
    _not_run(46, "edit_data_app", "edit_data_app"),
    _not_run(47, "read_data_app", "read_data_app"),
    _not_run(48, "create_v0_app", "create_v0_app"),
    _not_run(50, "omni", "omni_query"),
    _not_run(57, "looker", "looker_query"),
    _not_run(61, "save_automation", "save_automation"),
    _not_run(62, "dbt_run", "dbt_run"),
    _not_run(64, "dbt_compile", "dbt_compile"),
    "agents/build.aw.yml:1:1: warning: an Oxy agentic workflow (.aw.yml): Quarry does "
    "not read these yet; not compiled",
    "agents/router.agent.yml:9:1: warning: unknown field 'tools' is ignored (as Oxy ignores it)",
    "apps/dashboard.app.yml:50:9: warning: unknown field 'color' is ignored (as Oxy ignores it)",
    # Databases Quarry cannot open yet (#21): named with their type, the rest compiles.
    "config.yml:10:11: warning: database 'lake' (type: duckdb) cannot be used: DuckLake "
    "(data_path) is not supported: it needs DuckDB's ducklake extension, which Quarry's "
    "DuckDB sandbox does not install or load",
    "config.yml:35:11: warning: database 'air_managed' (type: airhouse_managed) cannot be "
    "used: airhouse_managed is not supported: its credentials come from Oxy's per-user "
    "provisioning, which Quarry does not have (use type: airhouse with host, user and "
    "password_var)",
    "config.yml:63:11: warning: database 'md' (type: motherduck) cannot be used: MotherDuck "
    "is not supported: it needs DuckDB's motherduck extension, which Quarry's DuckDB "
    "sandbox does not install or load",
    "config.yml:117:3: warning: 'slack' is no longer read (Oxy configures Slack per "
    "organisation); it is ignored",
    "config.yml:118:9: warning: 'admins' is no longer read (Oxy takes its owner from "
    "OXY_OWNER); it is ignored",
    "modeling/:1:1: warning: an airform/dbt modeling project (modeling/): Quarry does "
    "not read these yet; not compiled",
    # Oxy's semantic structs have no deny_unknown_fields: warnings, not errors.
    "semantics/orders.view.yml:17:5: warning: unknown field 'hidden' is ignored (as Oxy "
    "ignores it)",
    "semantics/sales.topic.yml:5:1: warning: unknown field 'owner' is ignored (as Oxy ignores it)",
    "workflows/nightly.automation.yml:5:5: warning: unknown field 'colour' is ignored "
    "(as Oxy ignores it)",
    "workflows/tasks.workflow.yml:41:16: warning: 'sql_query' is ignored: Oxy runs "
    "'sql_file' when both are given",
    "workflows/tasks.workflow.yml:94:11: warning: Quarry does not run 'omni_query' "
    "tasks yet (a run stops at this task)",
    "workflows/tasks.workflow.yml:99:11: warning: Quarry does not run 'looker_query' "
    "tasks yet (a run stops at this task)",
    "workflows/tasks.workflow.yml:105:11: warning: Quarry does not run 'visualize' "
    "tasks yet (a run stops at this task)",
    "workflows/tasks.workflow.yml:108:11: warning: unknown task type 'exeucte_sql' "
    "(Oxy accepts and skips it; Quarry cannot run it); did you mean 'execute_sql'?",
]

CONFIG = """\
databases:
  - name: local
    type: duckdb
    dataset: data
models:
  - name: claude
    vendor: anthropic
    model_ref: claude-sonnet-4
    key_var: ANTHROPIC_API_KEY
"""

FORMATTER_WORKFLOW = """\
tasks:
  - name: a
    type: formatter
    template: x
"""

# name -> (files, every problem as "path:line:col: [warning: ]message")
BROKEN: dict[str, tuple[dict[str, str], list[str]]] = {
    "config.yml typo does not hide the other files' problems": (
        {
            "config.yml": CONFIG + "default:\n  database: local\n",
            "a.workflow.yml": "tasks: []\ndescripton: x\n",
            "b.workflow.yml": (
                "tasks:\n  - name: q\n    type: execute_sql\n    database: locl\n"
                "    sql_query: select 1\n"
            ),
        },
        [
            "a.workflow.yml:2:1: unknown field 'descripton'; did you mean 'description'?",
            "b.workflow.yml:4:15: unknown database 'locl' (config.yml defines: local); "
            "did you mean 'local'?",
            "config.yml:10:1: unknown field 'default'; did you mean 'defaults'?",
        ],
    ),
    "config.yml missing: the rest is still checked": (
        {"a.workflow.yml": "tasks:\n  - name: a\n    type: formatter\n"},
        [
            "a.workflow.yml:2:5: missing required field 'template'",
            "config.yml:1:1: config.yml is missing at the workspace root",
        ],
    ),
    "config.yml unreadable: database references are not checked against nothing": (
        {
            "config.yml": "databases: [\n",
            "a.workflow.yml": (
                "tasks:\n  - name: q\n    type: execute_sql\n    database: anything\n"
                "    sql_file: missing.sql\n"
            ),
        },
        [
            "a.workflow.yml:5:15: file 'missing.sql' does not exist",
            "config.yml:2:1: invalid YAML: did not find expected node content "
            "(while parsing a flow node)",
        ],
    ),
    "a broken database entry is reported once, not again at each reference": (
        {
            "config.yml": CONFIG.replace(
                "models:", "  - name: pg\n    type: postgres\n    port: [1]\nmodels:"
            ),
            "a.workflow.yml": (
                "tasks:\n  - name: q\n    type: execute_sql\n    database: pg\n"
                "    sql_query: select 1\n"
            ),
        },
        ["config.yml:7:11: databases.1.port: input should be a valid string"],
    ),
    "an app refuses unknown keys at the top and in rows, as Oxy does": (
        {
            "config.yml": CONFIG,
            "a.app.yml": textwrap.dedent(
                """\
                titel: Sales
                tasks:
                  - name: t
                    type: execute_sql
                    database: local
                    sql_query: select 1 as x
                display:
                  - type: row
                    colums: 2
                    children:
                      - type: table
                        data: t
                """
            ),
        },
        [
            "a.app.yml:1:1: unknown field 'titel'; did you mean 'title'?",
            "a.app.yml:9:5: unknown field 'colums'; did you mean 'columns'?",
        ],
    ),
    "display kinds, control types and row columns are checked": (
        {
            "config.yml": CONFIG,
            "a.app.yml": textwrap.dedent(
                """\
                tasks:
                  - name: t
                    type: execute_sql
                    database: local
                    sql_query: select 1 as x
                controls:
                  - name: c
                    type: dropdown
                display:
                  - type: tabel
                    data: t
                  - type: control
                    name: d
                    control_type: calendar
                  - type: row
                    columns: 0
                    children: []
                  - type: bar_chart
                    data: totals
                    x: x
                    y: x
                """
            ),
        },
        [
            "a.app.yml:8:11: controls.0.type: input should be 'select', 'toggle' or 'date'",
            "a.app.yml:10:11: unknown display type 'tabel'; did you mean 'table'? "
            "(expected one of: bar_chart, control, controls, line_chart, markdown, "
            "pie_chart, row, table)",
            "a.app.yml:14:19: display.1.control_type: input should be 'select', 'toggle' or 'date'",
            "a.app.yml:16:14: display.2.columns: input should be greater than or equal to 1",
        ],
    ),
    "a display block must draw a task of its app": (
        {
            "config.yml": CONFIG,
            "a.app.yml": textwrap.dedent(
                """\
                tasks:
                  - name: totals
                    type: execute_sql
                    database: local
                    sql_query: select 1 as x
                display:
                  - type: bar_chart
                    data: total
                    x: x
                    y: x
                  - type: table
                    data: totals.sub
                """
            ),
        },
        [
            "a.app.yml:8:11: display block draws task 'total', which this app does not "
            "define (its tasks: totals); did you mean 'totals'?",
        ],
    ),
    "variables are JSON Schema, or Oxy's text shorthand": (
        {
            "config.yml": CONFIG,
            "a.workflow.yml": textwrap.dedent(
                """\
                variables:
                  ok: EU
                  count: 3
                  typo:
                    type: strng
                  bad_default:
                    type: integer
                    default: ten
                tasks: []
                """
            ),
        },
        [
            "a.workflow.yml:3:10: variables.count: expected a JSON Schema (a mapping) or a "
            "text default",
            "a.workflow.yml:5:5: variables.typo: not a valid JSON Schema (type: 'strng' is "
            "not valid under any of the given schemas)",
            "a.workflow.yml:7:5: variables.bad_default: its default does not fit its "
            "schema: 'ten' is not of type 'integer'",
        ],
    ),
    "test cases refuse unknown keys (deny_unknown_fields in Oxy)": (
        {
            "config.yml": CONFIG,
            "a.workflow.yml": FORMATTER_WORKFLOW
            + textwrap.dedent(
                """\
                tests:
                  - type: test_case
                    runs: 1
                    cases:
                      - prompt: p
                        expected: e
                        expect: e
                """
            ),
        },
        ["a.workflow.yml:11:9: unknown field 'expect'; did you mean 'expected'?"],
    ),
    "warnings come with the errors of other files": (
        {
            "config.yml": CONFIG,
            "a.workflow.yml": FORMATTER_WORKFLOW.replace(
                "template: x", "template: x\n    colour: 1"
            ),
            "b.workflow.yml": "tasks: 3\n",
        },
        [
            "a.workflow.yml:5:5: warning: unknown field 'colour' is ignored (as Oxy ignores it)",
            "b.workflow.yml:1:8: tasks: input should be a valid list",
        ],
    ),
}


def write_workspace(root: Path, files: dict[str, str]) -> Path:
    for relpath, text in files.items():
        target = root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (root / "data").mkdir(exist_ok=True)
    return root
