"""Wake-ups for run event followers: who learns that a run has new events, and when.

Postgres: ``append_event`` sends ``NOTIFY quarry_run_events, '<run id>'`` in the
statement that inserts the row, so the notification is delivered at commit, never
before the row is visible; ``listen_run_events`` yields the run ids on one
``LISTEN`` connection.

SQLite (one local process): there is no NOTIFY. ``append_event`` notes the run id on
the connection, and when the connection goes back to the pool (after its
transaction committed or rolled back) the ids go to the in-process subscribers. A
rolled-back transaction wakes a follower for nothing; it polls, finds nothing new and
waits again.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import Connection, Engine, event

RUN_EVENTS_CHANNEL = "quarry_run_events"
_PENDING = "quarry_run_events_pending"

LocalSubscriber = Callable[[frozenset[str]], None]
_subscribers: set[LocalSubscriber] = set()
_subscribers_lock = threading.Lock()


def note_local_event(conn: Connection, run_id: str) -> None:
    """Remember, on the pooled connection, a run whose event this transaction wrote."""
    pending: set[str] = conn.info.setdefault(_PENDING, set())
    pending.add(run_id)


def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
    pending: set[str] | None = record.info.pop(_PENDING, None) if record is not None else None
    if not pending:
        return
    with _subscribers_lock:
        subscribers = list(_subscribers)
    run_ids = frozenset(pending)
    for subscriber in subscribers:
        subscriber(run_ids)


def watch_local_commits(engine: Engine) -> None:
    """Deliver noted run ids to subscribers when ``engine``'s connections come back
    (idempotent)."""
    if not event.contains(engine.pool, "checkin", _on_checkin):
        event.listen(engine.pool, "checkin", _on_checkin)


def subscribe_local(subscriber: LocalSubscriber) -> Callable[[], None]:
    """Call ``subscriber`` (from the writing thread) with run ids; returns the unsubscribe."""
    with _subscribers_lock:
        _subscribers.add(subscriber)

    def unsubscribe() -> None:
        with _subscribers_lock:
            _subscribers.discard(subscriber)

    return unsubscribe


def listen_conninfo(engine: Engine) -> str | None:
    """The libpq connection string of a Postgres engine (None for SQLite)."""
    if engine.dialect.name != "postgresql":
        return None
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_run_events(conninfo: str, on_listening: Callable[[], None]) -> AsyncIterator[str]:
    """Run ids with new events, from one autocommit ``LISTEN`` connection; calls
    ``on_listening`` once the LISTEN is in place. Ends (raises) when the connection
    drops: the caller reconnects."""
    import psycopg  # here: every run event write imports this module, SQLite ones too

    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(f"LISTEN {RUN_EVENTS_CHANNEL}")
        on_listening()
        async for note in conn.notifies():
            yield note.payload
