"""``quarry run FILE`` runs the file named when another workflow file shares its stem
(``a.workflow.yml`` and ``a.procedure.yml`` coexist, issue #15). Real processes."""

from __future__ import annotations

from pathlib import Path

from tests.conformance.corpus import CONFIG, write_workspace
from tests.conformance.test_partial_run import _quarry


def test_quarry_run_picks_the_file_when_two_workflows_share_a_stem(tmp_path: Path) -> None:
    root = write_workspace(
        tmp_path / "ws",
        {
            "config.yml": CONFIG,
            "data/orders.csv": "id,amount\n1,10\n",
            "a.workflow.yml": "tasks:\n  - {name: w, type: formatter, template: from-workflow}\n",
            "a.procedure.yml": "tasks:\n  - {name: p, type: formatter, template: from-procedure}\n",
        },
    )
    data = tmp_path / "data"
    for suffix in ("workflow", "procedure"):
        ran = _quarry(["run", f"a.{suffix}.yml"], root, data)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert f"from-{suffix}" in ran.stdout
        assert f"workflow a.{suffix}.yml @" in ran.stderr
