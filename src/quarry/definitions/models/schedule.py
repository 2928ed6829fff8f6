"""``*.schedule.yml``: run a workflow (or refresh an app) on a cron schedule.

A Quarry format (Oxy has none). The schedule's identity is its definition name (the
path without ``.schedule.yml``), so renaming the file is the only way to make it a
different schedule; editing it keeps its identity and its place in time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from quarry.definitions.models.common import JsonObject, Strict
from quarry.definitions.models.cron import Cron, TimeZone


class ScheduleTarget(Strict):
    """Exactly one of ``workflow`` (a .workflow/.procedure/.automation file) or ``app``."""

    workflow: str | None = Field(None, description="Workspace-relative path of the workflow file.")
    app: str | None = Field(None, description="Workspace-relative path of the .app.yml to refresh.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ScheduleTarget:
        if (self.workflow is None) == (self.app is None):
            raise ValueError("give exactly one of 'workflow' or 'app'")
        return self


class ScheduleConfig(Strict):
    target: ScheduleTarget
    cron: Cron = Field(
        description="5 fields (minute hour day month weekday) or 6 (the 6th is seconds)."
    )
    timezone: TimeZone = Field("UTC", description="IANA time zone the cron is read in.")
    variables: JsonObject = Field(default_factory=dict, description="Variables for each run.")
    enabled: bool = True
    overlap: Literal["skip", "queue"] = Field(
        "skip",
        description="When the previous run is still queued or running: skip this fire "
        "(recorded as skipped) or queue another run.",
    )
    description: str = ""
