"""Webhook deliveries of alert events: queue tasks, retried with backoff.

Each change of an alert's state queues one ``alert_delivery`` task per notification
on the ``quarry.alerts`` queue, in the transaction that records the change. A
scheduling worker drains that queue (never the driver's thread), so a receiver that
is slow or answers 500 delays only further deliveries, never a schedule. A failed
attempt raises, and the task queue re-queues it with exponential backoff until
``max_attempts``; every attempt's HTTP status or error is written to the delivery's
row, and its final state is ``delivered`` or ``failed``.

The URL comes from the environment variable the monitor names (``url_env``), read at
delivery time on the delivering node; it is never logged or stored. The name goes
through the same allow-list as a database's ``*_var`` fields
(:mod:`quarry.runtime.connectors.secrets`): a monitor is workspace code, and may not
name ``QUARRY_*``/``AWS_*`` nor, in fleet mode, anything ``QUARRY_SECRET_ENV_ALLOW``
does not grant its tenant.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

import httpx

from quarry.core.clock import utcnow
from quarry.runtime.connectors.policy import ConnectorPolicy, current_policy
from quarry.runtime.connectors.secrets import SecretResolver
from quarry.runtime.queue import Task
from quarry.runtime.queue.worker import PermanentFailure
from quarry.store import alerts as alertq
from quarry.store.db import Engine

log = logging.getLogger(__name__)

EnvLookup = Callable[[str], str | None]


class DeliveryFailed(Exception):
    """One attempt failed; the queue retries it with backoff."""


def payload(fmt: str, alert: Any, event: Any) -> dict[str, Any]:
    """The request body: Quarry's alert document, or a Slack-compatible message."""
    value = json.loads(event.value) if event.value is not None else None
    if fmt == "slack":
        icon = ":rotating_light:" if event.state == "firing" else ":white_check_mark:"
        text = f"{icon} Monitor *{alert.monitor}* is {event.state}: {event.message}"
        return {
            "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        }
    return {
        "alert": alert.id,
        "monitor": alert.monitor,
        "workspace_id": alert.workspace_id,
        "state": event.state,
        "value": value,
        "message": event.message,
        "event_id": event.id,
        "at": event.created_at.isoformat(),
    }


class Deliverer:
    def __init__(
        self,
        engine: Engine,
        *,
        timeout: float = 5.0,
        env: EnvLookup = os.environ.get,
        policy: ConnectorPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.timeout = timeout
        self.env = env
        self.policy = policy
        self.client = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    def _finish(self, delivery_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            alertq.update_delivery(conn, delivery_id, **values)

    def handle(self, task: Task) -> object:
        delivery_id = int(task.payload["delivery_id"])
        with self.engine.connect() as conn:
            delivery = alertq.get_delivery(conn, delivery_id)
            event = alertq.get_event(conn, delivery.event_id)
            alert = alertq.get_alert(conn, delivery.alert_id)
        if alert is None:
            self._finish(
                delivery_id, state="failed", last_error="monitor removed", finished_at=utcnow()
            )
            return {"state": "failed"}
        secrets = SecretResolver(self.policy or current_policy(), alert.tenant_id, self.env)
        allowed = secrets.allowed(delivery.target)
        url = self.env(delivery.target) if allowed else None
        if not url:
            error = (
                f"environment variable {delivery.target} is not set on this node"
                if allowed
                else f"monitor {alert.monitor!r}: url_env names {delivery.target!r}, which "
                "this tenant may not read (an operator allows names with "
                "QUARRY_SECRET_ENV_ALLOW; QUARRY_* and AWS_* never resolve)"
            )
            self._finish(
                delivery_id,
                state="failed",
                attempts=task.attempts,
                last_error=error,
                finished_at=utcnow(),
            )
            raise PermanentFailure(error)
        status: int | None = None
        error_text: str | None = None
        try:
            response = self.client.post(url, json=payload(delivery.format, alert, event))
            status = response.status_code
            if status >= 400:
                error_text = f"receiver answered HTTP {status}"
        except httpx.HTTPError as exc:
            error_text = f"{type(exc).__name__}: {exc}"
        last = task.attempts >= task.max_attempts
        if error_text is None:
            self._finish(
                delivery_id,
                state="delivered",
                attempts=task.attempts,
                last_status=status,
                last_error=None,
                finished_at=utcnow(),
            )
            return {"state": "delivered", "status": status}
        self._finish(
            delivery_id,
            state="failed" if last else "pending",
            attempts=task.attempts,
            last_status=status,
            last_error=error_text,
            finished_at=utcnow() if last else None,
        )
        log.warning(
            "alert delivery %d (%s) attempt %d/%d failed: %s",
            delivery_id,
            delivery.target,
            task.attempts,
            task.max_attempts,
            error_text,
        )
        raise DeliveryFailed(error_text)
