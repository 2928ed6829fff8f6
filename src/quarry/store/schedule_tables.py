"""Schedules, monitors, their fire log, and alerts (see ``docs/schedules.md``).

``schedules`` holds one row per schedule *and* per monitor of each workspace's
promoted revision (``kind`` tells them apart), synced at promotion. Its ``id`` is
the stable identity: derived from (workspace, kind, definition name), never from a
revision, so a redeploy keeps the row, its ``next_run_at`` and its pause.

``schedule_fires`` is the fire log. Its primary key (schedule id, scheduled time)
backs the compare-and-swap on ``next_run_at``: even if a promotion raced a tick and
put an already-fired time back, the second insert conflicts and nothing is queued.
It has no foreign key so history outlives a removed schedule.

``alerts`` is one row per monitor: its state (``firing`` / ``resolved``) and the
last value checked. ``alert_events`` is its history — one row per change of state,
which is also the unit of notification. ``alert_deliveries`` records each webhook
delivery of an event: attempts, last HTTP status, final outcome.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from quarry.store.tables import HASH, ID, metadata
from quarry.store.types import UtcDateTime

_AUTO = BigInteger().with_variant(Integer, "sqlite")

schedules = Table(
    "schedules",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, nullable=False),
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(500), nullable=False),
    Column("revision_id", ID, nullable=False),
    Column("cron", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    # Hash of what decides *when* it fires (cron, time zone): unchanged -> keep next_run_at.
    Column("timing_hash", HASH, nullable=False),
    Column("body", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("overlap", String(16), nullable=False),
    Column("next_run_at", UtcDateTime(), nullable=True),
    Column("last_scheduled_for", UtcDateTime(), nullable=True),
    Column("last_fired_at", UtcDateTime(), nullable=True),
    Column("last_run_id", ID, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("workspace_id", "kind", "name"),
)
# The driver's one query: due rows.
Index("ix_schedules_due", schedules.c.kind, schedules.c.next_run_at)

schedule_fires = Table(
    "schedule_fires",
    metadata,
    Column("schedule_id", ID, primary_key=True),
    Column("scheduled_for", UtcDateTime(), primary_key=True),
    Column("tenant_id", ID, nullable=False),
    Column("fired_at", UtcDateTime(), nullable=False),
    Column("node", String(200), nullable=False),
    # run | check (a monitor check) | skipped (overlap) | manual
    Column("outcome", String(16), nullable=False),
    Column("run_id", ID, nullable=True),
    Column("task_id", BigInteger, nullable=True),
    # Further due times that were folded into this fire (all nodes were down).
    Column("coalesced", Integer, nullable=False, server_default=text("0")),
)
Index("ix_schedule_fires_recent", schedule_fires.c.schedule_id, schedule_fires.c.fired_at)

alerts = Table(
    "alerts",
    metadata,
    Column("id", ID, primary_key=True),  # the monitor's schedule id
    Column("tenant_id", ID, nullable=False),
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("monitor", String(500), nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", Text, nullable=True),
    Column("checked_at", UtcDateTime(), nullable=False),
    Column("changed_at", UtcDateTime(), nullable=True),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", _AUTO, primary_key=True, autoincrement=True),
    Column("alert_id", ID, nullable=False),
    Column("tenant_id", ID, nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", Text, nullable=True),
    Column("message", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ix_alert_events_alert", alert_events.c.alert_id, alert_events.c.id)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", _AUTO, primary_key=True, autoincrement=True),
    Column("event_id", BigInteger, nullable=False),
    Column("alert_id", ID, nullable=False),
    Column("tenant_id", ID, nullable=False),
    Column("target", String(200), nullable=False),  # the env variable naming the URL
    Column("format", String(16), nullable=False),
    # pending -> delivered | failed (attempts exhausted or no URL)
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("task_id", BigInteger, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=True),
)
Index("ix_alert_deliveries_event", alert_deliveries.c.event_id)
