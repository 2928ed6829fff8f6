"""Following a run is pushed, not polled: the terminal event reaches a follower on
a replica that did not execute the run, long before any poll would have told it.

The followers' safety-net poll is raised to 5 s, so only the push (LISTEN/NOTIFY on
Postgres, the local commit signal on SQLite) can deliver inside the bound; without
it every run would take up to 5 s to report its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import pytest

from quarry.api.app import create_app
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from tests.conftest import Backend
from tests.support.processes import serve_in_thread, wait_until
from tests.support.run_events import report_delay
from tests.support.services import PG_ADMIN_DSN

WS = "/api/v1/workspaces/shop"
RUNS = 30
SAFETY_NET_POLL_SECONDS = 5.0
# Far below the safety-net poll: without the push, a follower learns of an end only at
# its next poll, uniformly within 5 s, so 30 runs all under 1 s cannot happen (0.2**30).
# How fast the push is (a few ms) is measured by a benchmark, not asserted by a test on
# a shared machine.
PUSHED_BOUND_SECONDS = 1.0


@pytest.fixture
def replicas(backend: Backend, tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(executing replica, following replica). On Postgres they are two apps sharing
    the database; SQLite serves one local process, so both are the same app there."""
    with ExitStack() as stack:
        executor = build_services(
            backend.settings(
                data_dir=tmp_path / "data",
                revision_cache_ttl=0,
                inprocess_workers="on",
                run_events_poll_seconds=SAFETY_NET_POLL_SECONDS,
            )
        )
        stack.callback(executor.close)
        compile_local(
            executor.engine,
            executor.store,
            "local",
            create_demo_workspace(tmp_path / "shop"),
            "shop",
        )
        exec_url = stack.enter_context(serve_in_thread(create_app(executor)))
        follow_url = exec_url
        if backend.name == "postgres":
            follower = build_services(
                backend.settings(
                    data_dir=tmp_path / "data2",
                    inprocess_workers="off",
                    run_events_poll_seconds=SAFETY_NET_POLL_SECONDS,
                )
            )
            stack.callback(follower.close)
            follow_url = stack.enter_context(serve_in_thread(create_app(follower)))
        exec_client = stack.enter_context(httpx.Client(base_url=exec_url, timeout=30))
        follow_client = stack.enter_context(httpx.Client(base_url=follow_url, timeout=30))
        yield exec_client, follow_client


def test_a_finished_run_is_reported_within_a_few_ms_on_any_replica(
    replicas: tuple[httpx.Client, httpx.Client],
) -> None:
    exec_client, follow_client = replicas
    delays = [report_delay(exec_client, follow_client, WS) for _ in range(RUNS)]
    assert max(delays) < PUSHED_BOUND_SECONDS, sorted(delays)


def _listener_pid(dbname: str) -> int | None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND query = %s",
            (dbname, "LISTEN quarry_run_events"),
        ).fetchone()
    return None if row is None else int(row[0])


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_push_survives_a_dropped_listen_connection(
    backend: Backend, replicas: tuple[httpx.Client, httpx.Client]
) -> None:
    exec_client, follow_client = replicas
    report_delay(exec_client, follow_client, WS)  # the follower is listening now
    dbname = backend.database_url.rsplit("/", 1)[-1]
    wait_until(lambda: _listener_pid(dbname) is not None, 10, "the follower to LISTEN")
    first = _listener_pid(dbname)
    assert first is not None
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (first,))

    def relistening() -> bool:
        pid = _listener_pid(dbname)
        return pid is not None and pid != first

    wait_until(relistening, 15, "the follower to LISTEN again")
    delays = [report_delay(exec_client, follow_client, WS) for _ in range(5)]
    assert max(delays) < PUSHED_BOUND_SECONDS, sorted(delays)
