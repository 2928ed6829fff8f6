"""Promotion syncs schedules in its own transaction: added, unchanged, retimed,
disabled, removed; pause is database state and survives."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from quarry.core.errors import CompileFailed
from quarry.node.services import Services
from quarry.scheduling.admin import set_paused
from quarry.scheduling.sync import schedule_id
from quarry.store.schedule_tables import schedules
from tests.integration.scheduling.helpers import next_run, schedule_row
from tests.integration.scheduling.workspace import Workspace, schedule_yaml

NAME = "schedules/nightly"
PATH = "schedules/nightly.schedule.yml"


def test_added_schedule_gets_a_row_with_a_stable_identity(ws: Workspace, svc: Services) -> None:
    ws.write(PATH, schedule_yaml("0 3 * * *", timezone="Europe/Berlin"))
    ws.compile()
    row = schedule_row(svc.engine, NAME)
    assert row is not None
    assert row.id == schedule_id(ws.workspace_id, "schedule", NAME)
    assert row.cron == "0 3 * * *" and row.timezone == "Europe/Berlin"
    assert row.next_run_at is not None and row.enabled and not row.paused


def test_unchanged_schedule_keeps_next_run_at_across_revisions(
    ws: Workspace, svc: Services
) -> None:
    ws.write(PATH, schedule_yaml("*/5 * * * * *"))
    first = ws.compile()
    before = schedule_row(svc.engine, NAME)
    # A new revision (another file changed) that leaves the schedule as it was.
    ws.write("workflows/other.workflow.yml", "tasks: []\n")
    second = ws.compile()
    assert second.revision_id != first.revision_id and second.promoted
    after = schedule_row(svc.engine, NAME)
    assert after.id == before.id
    assert after.next_run_at == before.next_run_at
    assert after.revision_id == second.revision_id
    # Variables changed, timing not: the row follows, next_run_at does not move.
    ws.write(PATH, schedule_yaml("*/5 * * * * *", extra="variables: {region: EU}\n"))
    ws.compile()
    changed = schedule_row(svc.engine, NAME)
    assert changed.next_run_at == before.next_run_at
    assert '"region":"EU"' in changed.body


def test_changed_cron_recomputes_and_disable_clears(ws: Workspace, svc: Services) -> None:
    ws.write(PATH, schedule_yaml("0 3 1 1 *"))
    ws.compile()
    yearly = next_run(svc.engine, NAME)
    ws.write(PATH, schedule_yaml("* * * * * *"))
    ws.compile()
    assert next_run(svc.engine, NAME) < yearly
    ws.write(PATH, schedule_yaml("* * * * * *", enabled=False))
    ws.compile()
    row = schedule_row(svc.engine, NAME)
    assert not row.enabled and row.next_run_at is None
    ws.write(PATH, schedule_yaml("* * * * * *", enabled=True))
    ws.compile()
    assert schedule_row(svc.engine, NAME).next_run_at is not None


def test_removed_schedule_is_deleted(ws: Workspace, svc: Services) -> None:
    ws.write(PATH, schedule_yaml())
    ws.compile()
    ws.remove(PATH)
    ws.compile()
    assert schedule_row(svc.engine, NAME) is None


def test_pause_survives_a_promotion_and_resume_recomputes(ws: Workspace, svc: Services) -> None:
    ws.write(PATH, schedule_yaml("*/5 * * * * *"))
    ws.compile()
    paused = set_paused(svc.engine, "local", ws.workspace_id, NAME, True)
    assert paused.paused
    ws.write(PATH, schedule_yaml("*/10 * * * * *"))
    ws.compile()
    row = schedule_row(svc.engine, NAME)
    assert row.paused and row.cron == "*/10 * * * * *"
    resumed = set_paused(svc.engine, "local", ws.workspace_id, NAME, False)
    assert not resumed.paused and resumed.next_run_at is not None


def test_failed_compile_changes_no_schedule(ws: Workspace, svc: Services) -> None:
    ws.write(PATH, schedule_yaml("*/5 * * * * *"))
    ws.compile()
    before = schedule_row(svc.engine, NAME)
    ws.write(PATH, schedule_yaml("*/7 * * * * *", workflow="workflows/missing.workflow.yml"))
    with pytest.raises(CompileFailed) as failed:
        ws.compile()
    assert any("workflows/missing.workflow.yml" in p.message for p in failed.value.problems)
    with svc.engine.connect() as conn:
        rows = list(conn.execute(select(schedules)))
    assert len(rows) == 1 and rows[0].cron == before.cron
