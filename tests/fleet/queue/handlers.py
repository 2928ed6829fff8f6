"""Task handlers that the fleet tests' worker processes import by name."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from quarry.runtime.queue import LeaseLost, Task, fenced
from quarry.store.db import create_state_engine

_engine: Engine | None = None


def engine() -> Engine:
    global _engine
    if _engine is None:
        _engine = create_state_engine(os.environ["QUARRY_DATABASE_URL"], pool_size=2)
    return _engine


def record(task: Task) -> object:
    """Record one execution, in a transaction that commits only under the lease."""
    with engine().begin() as conn:
        fenced(conn, task)
        conn.execute(
            text("INSERT INTO queue_executions (task_id, owner) VALUES (:id, :owner)"),
            {"id": task.id, "owner": task.lease_owner},
        )
    return None


def _event(task: Task, event: str) -> None:
    with engine().begin() as conn:
        conn.execute(
            text("INSERT INTO queue_events (task_id, owner, event) VALUES (:id, :owner, :event)"),
            {"id": task.id, "owner": task.lease_owner, "event": event},
        )


def gated_step(task: Task) -> object:
    """Start, wait for the gate file (if this process has one), then checkpoint."""
    _event(task, "started")
    gate = os.environ.get("QUARRY_TEST_GATE")
    if gate:
        deadline = time.monotonic() + 60
        while not Path(gate).exists():
            if time.monotonic() > deadline:
                raise TimeoutError("gate never opened")
            time.sleep(0.02)
    result: dict[str, Any] = {"owner": task.lease_owner}
    try:
        with engine().begin() as conn:
            fenced(conn, task)
            conn.execute(
                text("INSERT INTO queue_checkpoints (task_id, owner) VALUES (:id, :owner)"),
                {"id": task.id, "owner": task.lease_owner},
            )
        _event(task, "checkpointed")
    except LeaseLost:
        _event(task, "checkpoint_refused")
        result["checkpoint"] = "refused"
    return result  # the worker's complete() is fenced too


def record_or_block(task: Task) -> object:
    """Record the run (unfenced: every execution counts), then, for a task whose
    payload says ``block``, wait for the gate file."""
    with engine().begin() as conn:
        conn.execute(
            text("INSERT INTO queue_runs (task_id, owner) VALUES (:id, :owner)"),
            {"id": task.id, "owner": task.lease_owner},
        )
    gate = os.environ.get("QUARRY_TEST_GATE")
    if task.payload.get("block") and gate:
        deadline = time.monotonic() + 60
        while not Path(gate).exists():
            if time.monotonic() > deadline:
                raise TimeoutError("gate never opened")
            time.sleep(0.02)
    return None
