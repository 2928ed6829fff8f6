"""Monitor alerts: every query on ``alerts``, ``alert_events`` and
``alert_deliveries`` (tables in :mod:`quarry.store.schedule_tables`).

:mod:`quarry.scheduling.alerts` decides when a check changes an alert's state and
what to notify; :mod:`quarry.scheduling.delivery` sends the webhooks. Both write
through these functions, inside the transaction they were given. Rows are returned
as SQLAlchemy rows (attribute access by column name).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, desc, insert, select, update

from quarry.store.schedule_tables import alert_deliveries, alert_events, alerts

# -- the alert row ------------------------------------------------------------------


def lock_alert(conn: Connection, alert_id: str) -> Any:
    """The alert row (None before a monitor's first check), locked for the caller's
    transaction on Postgres so two checks of one monitor change its state in turn."""
    query = select(alerts).where(alerts.c.id == alert_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def get_alert(conn: Connection, alert_id: str) -> Any:
    return conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()


def insert_alert(conn: Connection, **values: Any) -> None:
    conn.execute(insert(alerts).values(**values))


def record_value(conn: Connection, alert_id: str, value: str, checked_at: datetime) -> None:
    """The last checked value, whatever the verdict."""
    conn.execute(
        update(alerts).where(alerts.c.id == alert_id).values(value=value, checked_at=checked_at)
    )


def set_state(conn: Connection, alert_id: str, state: str, changed_at: datetime) -> None:
    conn.execute(
        update(alerts).where(alerts.c.id == alert_id).values(state=state, changed_at=changed_at)
    )


def delete_alerts(conn: Connection, alert_ids: Sequence[str]) -> None:
    """Delete the alert rows of removed monitors (their events and deliveries stay)."""
    conn.execute(delete(alerts).where(alerts.c.id.in_(list(alert_ids))))


def find_alert(conn: Connection, tenant_id: str, workspace_id: str, monitor: str) -> Any:
    """The alert of one named monitor of a tenant's workspace, or None."""
    return conn.execute(
        select(alerts).where(
            alerts.c.tenant_id == tenant_id,
            alerts.c.workspace_id == workspace_id,
            alerts.c.monitor == monitor,
        )
    ).first()


def list_alerts(conn: Connection, tenant_id: str, workspace_id: str) -> list[Any]:
    """A workspace's alerts by monitor name."""
    return list(
        conn.execute(
            select(alerts)
            .where(alerts.c.tenant_id == tenant_id, alerts.c.workspace_id == workspace_id)
            .order_by(alerts.c.monitor)
        )
    )


# -- events (one per change of state) -------------------------------------------------


def insert_event(
    conn: Connection,
    *,
    alert_id: str,
    tenant_id: str,
    state: str,
    value: str | None,
    message: str,
    created_at: datetime,
) -> int:
    """Append a change of state to the history; its id."""
    event_id = conn.execute(
        insert(alert_events)
        .values(
            alert_id=alert_id,
            tenant_id=tenant_id,
            state=state,
            value=value,
            message=message,
            created_at=created_at,
        )
        .returning(alert_events.c.id)
    ).scalar_one()
    return int(event_id)


def get_event(conn: Connection, event_id: int) -> Any:
    return conn.execute(select(alert_events).where(alert_events.c.id == event_id)).one()


def recent_events(conn: Connection, alert_id: str, limit: int) -> list[Any]:
    """One alert's history, newest first."""
    return list(
        conn.execute(
            select(alert_events)
            .where(alert_events.c.alert_id == alert_id)
            .order_by(desc(alert_events.c.id))
            .limit(limit)
        )
    )


# -- webhook deliveries (one per event and notification) ------------------------------


def insert_delivery(
    conn: Connection,
    *,
    event_id: int,
    alert_id: str,
    tenant_id: str,
    target: str,
    format: str,
    created_at: datetime,
) -> int:
    """A pending delivery of an event to one notification target; its id."""
    delivery_id = conn.execute(
        insert(alert_deliveries)
        .values(
            event_id=event_id,
            alert_id=alert_id,
            tenant_id=tenant_id,
            target=target,
            format=format,
            state="pending",
            attempts=0,
            created_at=created_at,
        )
        .returning(alert_deliveries.c.id)
    ).scalar_one()
    return int(delivery_id)


def set_delivery_task(conn: Connection, delivery_id: int, task_id: int) -> None:
    update_delivery(conn, delivery_id, task_id=task_id)


def update_delivery(conn: Connection, delivery_id: int, **values: Any) -> None:
    """Record an attempt's outcome (state, attempts, last status or error...)."""
    conn.execute(
        update(alert_deliveries).where(alert_deliveries.c.id == delivery_id).values(**values)
    )


def get_delivery(conn: Connection, delivery_id: int) -> Any:
    return conn.execute(select(alert_deliveries).where(alert_deliveries.c.id == delivery_id)).one()


def deliveries_of_events(conn: Connection, event_ids: Sequence[int]) -> list[Any]:
    """The deliveries of the given events, in the order they were created."""
    if not event_ids:
        return []
    return list(
        conn.execute(
            select(alert_deliveries)
            .where(alert_deliveries.c.event_id.in_(list(event_ids)))
            .order_by(alert_deliveries.c.id)
        )
    )
