"""``quarry compile --check`` from the user's side (issue 19): a misspelt kind or
enum value gets a did-you-mean, names a template uses that nothing defines are
warnings at their line, and ``models:`` is only needed when something uses a model.
Each test runs the CLI as a process on a workspace written to a temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFIG = "databases:\n  - name: local\n    type: duckdb\n    dataset: data\n"


def _workspace(root: Path, files: dict[str, str]) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "orders.csv").write_text("region,amount\nEU,1\nUS,2\n")
    for path, text in {"config.yml": CONFIG, **files}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def _check(root: Path, *extra: str) -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
    env["QUARRY_DATA_DIR"] = str(root.parent / "state")
    done = subprocess.run(
        [sys.executable, "-m", "quarry", "compile", "--check", *extra, str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).splitlines()


def test_a_misspelt_display_type_gets_a_did_you_mean(tmp_path: Path) -> None:
    root = _workspace(
        tmp_path / "ws",
        {
            "apps/a.app.yml": (
                "name: A\n"
                "tasks:\n"
                "  - {name: load, type: execute_sql, database: local, sql_query: select 1}\n"
                "display:\n"
                "  - type: tabel\n"
                "    data: load\n"
            )
        },
    )
    code, lines = _check(root)
    assert code == 1
    assert (
        "apps/a.app.yml:5:11: unknown display type 'tabel'; did you mean 'table'? "
        "(expected one of: bar_chart, control, controls, line_chart, markdown, pie_chart, "
        "row, table)"
    ) in lines
    assert not any("not supported yet" in line for line in lines)


def test_misspelt_kinds_of_databases_tasks_controls_and_tools(tmp_path: Path) -> None:
    root = _workspace(
        tmp_path / "ws",
        {
            "config.yml": CONFIG + "  - name: pg\n    type: postgress\n",
            "apps/a.app.yml": (
                "name: A\n"
                "controls:\n"
                "  - {name: region, type: selectt, options: [EU, US]}\n"
                "tasks:\n"
                "  - {name: load, type: execute_sql, database: local, sql_query: select 1}\n"
                "display:\n  - {type: markdown, content: hi}\n"
            ),
            "workflows/w.workflow.yml": (
                "tasks:\n"
                "  - {name: load, type: exectue_sql, database: local, sql_query: select 1}\n"
            ),
            "agents/x.agent.yml": (
                "model: m\nsystem_instructions: hi\n"
                "tools:\n  - {name: t, type: execute_sqll, database: local}\n"
            ),
            "semantics/views/v.view.yml": (
                "name: v\ndatasource: local\ntable: orders.csv\n"
                "entities:\n  - {name: order, type: primary, key: region}\n"
                "dimensions:\n  - {name: region, type: strng, expr: region}\n"
            ),
        },
    )
    code, lines = _check(root)
    assert code == 1
    found = {line.split(" (expected")[0] for line in lines}
    assert "config.yml:6:11: unknown database type 'postgress'; did you mean 'postgres'?" in found
    assert "apps/a.app.yml:3:26: unknown control type 'selectt'; did you mean 'select'?" in found
    assert (
        "workflows/w.workflow.yml:2:24: warning: unknown task type 'exectue_sql' "
        "(Oxy accepts and skips it; Quarry cannot run it); did you mean 'execute_sql'?"
    ) in found
    assert (
        "agents/x.agent.yml:4:21: unknown tool type 'execute_sqll'; did you mean 'execute_sql'?"
        in found
    )
    assert (
        "semantics/views/v.view.yml:7:26: unknown dimension type 'strng'; did you mean 'string'?"
        in found
    )


WORKFLOW = """\
variables:
  region: EU
tasks:
  - name: orders
    type: execute_sql
    database: local
    sql_query: select * from orders where region = '{{ regoin }}'
  - name: report
    type: formatter
    template: |
      Orders in {{ region }}:
      {% for row in orders %}{{ row.amount }}{% endfor %}
      {{ totals }}
"""

APP = """\
name: A
controls:
  - {name: region, type: select, options: [EU, US]}
tasks:
  - name: load
    type: execute_sql
    database: local
    sql_query: select * from orders where region = '{{ controls.regon }}'
display:
  - type: markdown
    content: "{{ load }} {{ lod }}"
"""


def test_names_templates_use_that_nothing_defines_are_warnings(tmp_path: Path) -> None:
    root = _workspace(
        tmp_path / "ws", {"workflows/w.workflow.yml": WORKFLOW, "apps/a.app.yml": APP}
    )
    code, lines = _check(root)
    assert code == 0, lines
    assert (
        "workflows/w.workflow.yml:7:56: warning: template uses 'regoin', which nothing in this "
        "file defines (no variable or task of that name; it renders as nothing); "
        "did you mean 'region'?"
    ) in lines
    assert (
        "workflows/w.workflow.yml:13:10: warning: template uses 'totals', which nothing in "
        "this file defines (no variable or task of that name; it renders as nothing)"
    ) in lines
    assert (
        "apps/a.app.yml:8:56: warning: template uses 'controls.regon', but this app has no "
        "control 'regon' (its controls: region); did you mean 'region'?"
    ) in lines
    assert (
        "apps/a.app.yml:11:29: warning: template uses 'lod', which nothing in this file "
        "defines (no task or control of that name; it renders as nothing); did you mean 'load'?"
    ) in lines
    # names the template binds itself, defined ones and globals are not reported
    warned = " ".join(line for line in lines if "template uses" in line)
    for name in ("'row'", "'orders'", "'region'", "'load'"):
        assert f"template uses {name}" not in warned
    assert lines[-1].endswith("; 4 warnings")

    code, lines = _check(root, "--strict")
    assert code == 1
    assert any("error" in line.lower() or "failed" in line for line in lines)


def test_models_are_only_needed_when_something_uses_one(tmp_path: Path) -> None:
    root = _workspace(
        tmp_path / "ws",
        {
            "workflows/w.workflow.yml": (
                "tasks:\n  - {name: one, type: execute_sql, database: local, sql_query: select 1}\n"
            )
        },
    )
    code, lines = _check(root)
    assert code == 0, lines
    assert lines[-1].startswith("ok: 2 definitions")

    (root / "agents").mkdir()
    (root / "agents" / "a.agent.yml").write_text("model: gpt\nsystem_instructions: hi\n")
    code, lines = _check(root)
    assert code == 1
    assert "agents/a.agent.yml:1:8: unknown model 'gpt' (config.yml defines no models)" in lines
