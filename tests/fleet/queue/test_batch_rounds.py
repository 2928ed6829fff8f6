"""Four batched worker processes through 50 drain rounds: no deadlock, every round
on time (issue #20: the three-way deadlock in ``complete_many_and_claim`` took a
worker out for good and made a 1.2 s drain take 36 s).

The deadlock itself needs an unlucky interleaving, so this test may pass on the old
SQL on a quiet machine; ``tests/integration/queue/test_lock_order.py`` reproduces it
deterministically. What this adds: real processes, the real statement, many rounds,
and one round in which every backend of the database is terminated mid-drain -- the
workers reconnect and that round finishes on time too.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import Engine, insert, text

from quarry.store.db import create_state_engine
from quarry.store.queue_tables import tasks
from tests.fleet.queue.conftest import Fleet
from tests.integration.queue.helpers import wait_for
from tests.support.services import PG_ADMIN_DSN

pytestmark = pytest.mark.slow

# 50 rounds (the bar) of 800 tasks: the same 40,000 tasks and about the same
# number of contended claim-and-complete statements per worker (80 batches of 10 per
# round, 4,000 in all) as the earlier 20 rounds of 2,000, so the old interleaving is as
# likely as before, while the suite's time stays what it was.
ROUNDS = 50
TASKS_PER_ROUND = 800
CUT_ROUND = ROUNDS // 2
LEASE = 3.0
# A round drains in about a second here; a deadlocked worker's batch used to wait out
# its lease. The cut round may wait for one lease (a claim whose reply was lost) plus
# a reaper pass.
ROUND_DEADLINE = 15.0


def _insert_round(engine: Engine, n: int, round_no: int) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "tenant_id": f"tenant-{i % 3}",
            "queue": "default",
            "kind": "noop",
            "payload": f'{{"round": {round_no}}}',
            "state": "queued",
            "run_after": now,
            "created_at": now,
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        conn.execute(insert(tasks), rows)


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def _terminate_all(database: str) -> int:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
    return 0 if row is None else int(row[0])


def test_four_batched_workers_drain_many_rounds_without_deadlock(fleet: Fleet) -> None:
    engine = create_state_engine(fleet.database_url)
    database = fleet.database_url.rsplit("/", 1)[1]
    workers = [
        fleet.start(
            f"b{i}",
            "--batch",
            "10",
            "--poll",
            "0.2",
            "--lease",
            str(LEASE),
            "--reap-interval",
            "0.5",
            "--log-level",
            "INFO",
        )
        for i in range(4)
    ]
    for w in workers:
        w.wait_line("READY", 30)
    durations: list[float] = []
    for round_no in range(ROUNDS):
        _insert_round(engine, TASKS_PER_ROUND, round_no)
        started = time.monotonic()
        if round_no == CUT_ROUND:
            wait_for(
                lambda before=round_no * TASKS_PER_ROUND: (
                    _count(engine, "SELECT count(*) FROM tasks WHERE state = 'succeeded'") > before
                ),
                timeout=10,
                what="the cut round to be under way",
            )
            assert _terminate_all(database) >= 4
        wait_for(
            lambda: _count(engine, "SELECT count(*) FROM tasks WHERE state <> 'succeeded'") == 0,
            timeout=ROUND_DEADLINE,
            what=f"round {round_no} to drain",
        )
        durations.append(time.monotonic() - started)
    stats = [w.stop() for w in workers]
    stderr = "".join(w.stderr_path.read_text(errors="replace") for w in workers)
    assert "deadlock detected" not in stderr.lower()
    assert "PendingRollbackError" not in stderr
    total = ROUNDS * TASKS_PER_ROUND
    assert _count(engine, "SELECT count(*) FROM tasks WHERE state = 'succeeded'") == total
    # Only a task claimed by a statement whose reply the cut swallowed ran twice.
    assert _count(engine, "SELECT count(*) FROM tasks WHERE attempts > 1") <= 40
    # Worker-side counts: a completion whose reply the cut swallowed is retried and
    # then refused (already recorded), counted as a lost lease, not a success.
    assert sum(s["succeeded"] + s["lease_lost"] for s in stats) >= total
    assert sum(s["lease_lost"] for s in stats) <= 40
    print(f"rounds drained in {', '.join(f'{d:.2f}' for d in durations)} s")
    engine.dispose()
