"""``*.monitor.yml``: check a metric on a schedule and alert on a condition.

A Quarry format. The query returns one value (the first row's ``column``, or its
first column); the condition turns it into firing or not; an alert is notified only
when that changes (firing -> resolved or back), never once per check.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from quarry.definitions.models.common import Strict
from quarry.definitions.models.cron import Cron, TimeZone


class MonitorQuery(Strict):
    database: str = Field(description="A database of config.yml.")
    sql: str = Field(description="SQL returning the value to check in its first row.")
    column: str | None = Field(None, description="Column holding the value; default: the first.")


class ThresholdCondition(Strict):
    type: Literal["threshold"]
    operator: Literal[">", ">=", "<", "<=", "==", "!="]
    value: float


class ChangeCondition(Strict):
    """Firing while the value differs from the previous check's value."""

    type: Literal["change"]


Condition = Annotated[ThresholdCondition | ChangeCondition, Field(discriminator="type")]


class WebhookNotification(Strict):
    type: Literal["webhook"] = "webhook"
    url_env: str = Field(
        description="Environment variable holding the webhook URL (secrets stay out of git)."
    )
    format: Literal["json", "slack"] = Field(
        "json", description="'json': Quarry's alert document; 'slack': a Slack-compatible body."
    )


class MonitorConfig(Strict):
    query: MonitorQuery
    condition: Condition
    cron: Cron
    timezone: TimeZone = "UTC"
    enabled: bool = True
    notify: list[WebhookNotification] = []
    description: str = ""
