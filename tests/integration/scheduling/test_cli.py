"""``quarry schedules`` and ``quarry alerts`` as real processes on the test's database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quarry.node.services import Services
from tests.conftest import Backend
from tests.integration.scheduling.helpers import schedule_row
from tests.integration.scheduling.workspace import Workspace, schedule_yaml

REPO = Path(__file__).resolve().parents[3]
# Real processes, ~10 s each on a loaded machine; the CLI's output does not depend on
# the backend (the schedule queries are tested on both in test_ticks and test_api).
pytestmark = [pytest.mark.slow, pytest.mark.backend_agnostic]


def _quarry(backend: Backend, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **backend.process_env(),
        "PYTHONPATH": str(REPO),
        "QUARRY_DATA_DIR": str(tmp_path / "cli-data"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "quarry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_schedules_cli(ws: Workspace, svc: Services, backend: Backend, tmp_path: Path) -> None:
    ws.write("schedules/nightly.schedule.yml", schedule_yaml("0 3 * * *"))
    ws.compile()
    listed = _quarry(backend, tmp_path, "schedules", "list", "-w", "sched", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["name"] == "schedules/nightly" and row["next_run_at"]

    paused = _quarry(backend, tmp_path, "schedules", "pause", "schedules/nightly", "-w", "sched")
    assert paused.returncode == 0 and "paused" in paused.stdout
    assert schedule_row(svc.engine, "schedules/nightly").paused

    fired = _quarry(backend, tmp_path, "schedules", "trigger", "schedules/nightly", "-w", "sched")
    assert fired.returncode == 0 and "fired schedules/nightly" in fired.stdout
    log = _quarry(backend, tmp_path, "schedules", "fires", "schedules/nightly", "-w", "sched")
    assert json.loads(log.stdout)[0]["outcome"] == "manual"

    missing = _quarry(backend, tmp_path, "schedules", "pause", "nope", "-w", "sched")
    assert missing.returncode == 1 and "no schedule named 'nope'" in missing.stderr
    alerts = _quarry(backend, tmp_path, "alerts", "history", "monitors/x", "-w", "sched")
    assert alerts.returncode == 1 and "no alert for monitor" in alerts.stderr
