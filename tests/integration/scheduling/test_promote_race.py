"""A promotion that leaves a schedule unchanged, racing a tick on the same row
(Postgres, two real connections, the interleaving forced with row locks)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from quarry.core.settings import Settings
from quarry.node.services import Services, build_services
from quarry.scheduling.ticks import advance, tick_schedules
from quarry.store.schedules import claim_due
from tests.integration.scheduling.helpers import fires, next_run, schedule_row
from tests.integration.scheduling.workspace import Workspace, schedule_yaml
from tests.support.processes import wait_until

NAME = "schedules/every"
PATH = "schedules/every.schedule.yml"


@pytest.fixture
def pg_svc(pg_database: str, tmp_path: Path) -> Iterator[Services]:
    svc = build_services(
        Settings(
            database_url=pg_database,
            blob_url=(tmp_path / "blobs").as_uri(),
            data_dir=tmp_path / "data",
            global_driver="off",
        )
    )
    yield svc
    svc.close()


def _blocked_on_a_lock(svc: Services) -> bool:
    with svc.engine.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)


def _promote_unchanged_in_thread(ws: Workspace, n: int) -> threading.Thread:
    ws.write("workflows/unrelated.workflow.yml", f"tasks: []\ndescription: rev {n}\n")
    thread = threading.Thread(target=ws.compile)
    thread.start()
    return thread


def test_promotion_waiting_on_a_tick_does_not_undo_it(pg_svc: Services, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", pg_svc)
    ws.write(PATH, schedule_yaml("* * * * * *"))
    ws.compile()
    row = schedule_row(pg_svc.engine, NAME)
    due = row.next_run_at
    nxt, _ = advance(row.cron, row.timezone, due, due, 5.0)
    with pg_svc.engine.connect() as tick, tick.begin():
        assert claim_due(tick, row.id, due, nxt, due) is not None  # the tick holds the row
        promotion = _promote_unchanged_in_thread(ws, 1)
        wait_until(lambda: _blocked_on_a_lock(pg_svc), 30, "the promotion to wait")
        # the tick commits; the promotion goes on and must keep what the tick wrote
    promotion.join(60)
    assert next_run(pg_svc.engine, NAME) == nxt
    assert schedule_row(pg_svc.engine, NAME).revision_id != row.revision_id
    assert tick_schedules(pg_svc, now=due) == []


def test_tick_skips_a_row_a_promotion_holds_then_fires_it_once(
    pg_svc: Services, tmp_path: Path
) -> None:
    ws = Workspace(tmp_path / "ws", pg_svc)
    ws.write(PATH, schedule_yaml("* * * * * *"))
    ws.compile()
    row = schedule_row(pg_svc.engine, NAME)
    due = row.next_run_at
    with pg_svc.engine.connect() as hold, hold.begin():
        # What a promotion's sync holds until it commits: the tick skips the row
        # (SKIP LOCKED) instead of waiting, and it stays due.
        hold.execute(text("SELECT 1 FROM schedules WHERE id = :id FOR UPDATE"), {"id": row.id})
        assert tick_schedules(pg_svc, now=due) == []
    promotion = _promote_unchanged_in_thread(ws, 2)
    promotion.join(60)
    assert next_run(pg_svc.engine, NAME) == due
    fired = tick_schedules(pg_svc, now=due + timedelta(milliseconds=300))
    again = tick_schedules(pg_svc, now=due + timedelta(milliseconds=600))
    assert [f.scheduled_for for f in fired] == [due] and again == []
    assert [f.scheduled_for for f in fires(pg_svc.engine, row.id)] == [due]
