"""Runs, their steps (the durable checkpoints), their event stream and artifacts.

A run executes one compiled definition at one revision; its task in ``tasks`` is
how a worker gets it. A step row with state ``succeeded`` is a checkpoint: a run
resumed after a crash replays it from ``result_key`` instead of executing it again.
Events are rows, not in-memory streams, so any replica can follow any run.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from quarry.store.tables import ID, metadata
from quarry.store.types import UtcDateTime

runs = Table(
    "runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("revision_id", ID, nullable=False),
    Column("target_kind", String(32), nullable=False),
    Column("target_name", String(500), nullable=False),
    Column("variables", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("origin", String(32), nullable=False),
    Column("task_id", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("started_at", UtcDateTime(), nullable=True),
    Column("finished_at", UtcDateTime(), nullable=True),
)

run_steps = Table(
    "run_steps",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("step_key", String(500), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("result_key", Text, nullable=True),
    Column("result_format", String(16), nullable=True),
    Column("rows", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("started_at", UtcDateTime(), nullable=True),
    Column("finished_at", UtcDateTime(), nullable=True),
)

run_events = Table(
    "run_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", ID, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("event", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("run_id", ID, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step_key", String(500), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(500), nullable=False),
    Column("format", String(16), nullable=False),
    Column("object_key", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

Index("ix_runs_listing", runs.c.tenant_id, runs.c.workspace_id, runs.c.created_at)
Index("ix_run_events_run", run_events.c.run_id, run_events.c.id)
Index("ix_artifacts_run", artifacts.c.run_id, artifacts.c.kind)
