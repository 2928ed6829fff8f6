from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from quarry.store.run_tables import runs
from quarry.store.schedule_tables import schedule_fires, schedules


def schedule_row(engine: Engine, name: str, kind: str = "schedule") -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(schedules).where(schedules.c.name == name, schedules.c.kind == kind)
        ).first()


def next_run(engine: Engine, name: str, kind: str = "schedule") -> datetime:
    row = schedule_row(engine, name, kind)
    assert row is not None and row.next_run_at is not None
    value: datetime = row.next_run_at
    return value


def fires(engine: Engine, schedule_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(schedule_fires)
                .where(schedule_fires.c.schedule_id == schedule_id)
                .order_by(schedule_fires.c.scheduled_for)
            )
        )


def scheduled_runs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(runs).where(runs.c.origin == "schedule")))
