"""Promotion -> the schedules table, in the promotion's own transaction.

Called by the compiler right after the ``current_revision_id`` compare-and-swap, on
the same connection, so the pointer and the schedules move together or not at all.

Rules (see ``docs/schedules.md``):

* identity is :func:`schedule_id` of (workspace, kind, name) — never a revision;
* a schedule whose cron and time zone did not change keeps its ``next_run_at``
  untouched (the UPDATE does not even name the column, so a tick that advanced it
  a moment ago is never undone): no double fire, no skip;
* a changed cron or time zone, or ``enabled: false -> true``, recomputes
  ``next_run_at`` from now; ``enabled: false`` clears it;
* a schedule no longer in the revision is deleted (its fire log stays);
* ``paused`` is operator state in the database and survives every sync.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from quarry.core.clock import utcnow
from quarry.core.hashing import canonical_json, sha256_hex, short_id
from quarry.scheduling.timing import next_fire
from quarry.store import alerts as alertq
from quarry.store import schedules as scheduleq
from quarry.store.db import Connection
from quarry.store.revisions import definition_bodies_of_kinds

TRIGGER_KINDS = ("schedule", "monitor")


def schedule_id(workspace_id: str, kind: str, name: str) -> str:
    """The stable identity of a schedule or monitor: the same for every revision."""
    return short_id(sha256_hex(canonical_json(["trigger", workspace_id, kind, name])))


def timing_hash(cron: str, timezone: str) -> str:
    return sha256_hex(canonical_json([cron, timezone]))


@dataclass
class SyncResult:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    retimed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def sync_triggers(
    conn: Connection,
    tenant_id: str,
    workspace_id: str,
    revision_id: str,
    *,
    now: datetime | None = None,
) -> SyncResult:
    """Make the schedules of ``workspace_id`` those of ``revision_id`` (just promoted)."""
    now = now or utcnow()
    result = SyncResult()
    wanted = definition_bodies_of_kinds(conn, workspace_id, revision_id, TRIGGER_KINDS)
    existing = scheduleq.lock_workspace_schedules(conn, workspace_id)
    seen: set[str] = set()
    for definition, stored in wanted:
        kind, name = definition.kind, definition.name
        body: dict[str, Any] = json.loads(stored)
        raw = canonical_json(body).decode("utf-8")
        sid = schedule_id(workspace_id, kind, name)
        seen.add(sid)
        cron = str(body["cron"])
        timezone = str(body.get("timezone", "UTC"))
        enabled = bool(body.get("enabled", True))
        timing = timing_hash(cron, timezone)
        values: dict[str, Any] = {
            "revision_id": revision_id,
            "cron": cron,
            "timezone": timezone,
            "timing_hash": timing,
            "body": raw,
            "enabled": enabled,
            "overlap": str(body.get("overlap", "skip")),
            "updated_at": now,
        }
        fresh = next_fire(cron, timezone, now) if enabled else None
        row = existing.get(sid)
        if row is None:
            scheduleq.insert_schedule(
                conn,
                id=sid,
                tenant_id=tenant_id,
                workspace_id=workspace_id,
                kind=kind,
                name=name,
                next_run_at=fresh,
                paused=False,
                created_at=now,
                **values,
            )
            result.added.append(name)
            continue
        if not enabled:
            values["next_run_at"] = None
        elif row.timing_hash != timing or not row.enabled or row.next_run_at is None:
            values["next_run_at"] = fresh
            result.retimed.append(name)
        if row.body != raw:
            result.changed.append(name)
        scheduleq.update_schedule(conn, sid, **values)
    gone = [sid for sid in existing if sid not in seen]
    if gone:
        scheduleq.delete_schedules(conn, gone)
        alertq.delete_alerts(conn, gone)
        result.removed.extend(existing[sid].name for sid in gone)
    return result
