"""What a step runs with: the run's services (``RunContext``) and the names in
scope (``Scope``: variables, earlier outputs, the current loop value, and the
step's own facts as ``step``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from quarry.runtime.connectors.base import BoundSql, Connector
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.engine.journal import StepJournal
from quarry.runtime.engine.results import Output
from quarry.runtime.engine.views import to_view
from quarry.runtime.engine.watchdog import Watchdog
from quarry.runtime.source import RevisionSource

EventSink = Callable[[dict[str, Any]], None]
ExportSink = Callable[[str, bytes, str], None]
"""``on_export(path, data, format)``: the caller stores the bytes (object store,
working copy); ``path`` is workspace-relative and already checked."""

MAX_WORKFLOW_DEPTH = 16


def _ignore(_event: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class RunContext:
    source: RevisionSource
    connections: Connections
    journal: StepJournal
    watchdog: Watchdog
    on_event: EventSink = _ignore
    on_export: ExportSink | None = None
    step_timeout: float | None = None
    """The timeout of a leaf step (SQL, formatter...) that sets no ``timeout``."""
    run_id: str = ""
    attempt: int = 1
    workflows: tuple[str, ...] = ()
    strict_templates: bool = False
    """The workspace asks for strict templates (``defaults.strict_templates``)."""

    def emit(self, event: str, step: str, **fields: Any) -> None:
        self.on_event({"event": event, "step": step, "at": time.time(), **fields})

    def query(self, connector: Connector, sql: BoundSql, step: str, task: str) -> pa.Table:
        """Run a step's statement where the watchdog can interrupt it (a timeout, the
        deadline, a cancel); every task that runs SQL goes through here."""
        with self.watchdog.statement(connector, step, task):
            return connector.query(sql)

    def entering(self, workflow: str) -> RunContext:
        return replace(self, workflows=(*self.workflows, workflow))

    def step_facts(self, key: str) -> dict[str, Any]:
        """``step`` in a step's templates. The idempotency key is the same every time
        the step executes in this run (a step in flight when its worker died runs
        again with the same key), so a warehouse write can be deduplicated on it."""
        return {
            "key": key,
            "run_id": self.run_id,
            "attempt": self.attempt,
            "idempotency_key": f"{self.run_id}:{key}",
        }


@dataclass
class Scope:
    """Names visible to templates; a child sees its parent's names and adds its own."""

    variables: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Output] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    parent: Scope | None = None
    # Names Quarry provides (``step``): the nearest one is visible, unless a
    # variable, output or loop of the workspace has the same name.
    builtins: dict[str, Any] = field(default_factory=dict)

    def child(self, **extras: Any) -> Scope:
        return Scope(extras=extras, parent=self)

    def for_step(self, facts: dict[str, Any]) -> Scope:
        return Scope(parent=self, builtins={"step": facts})

    def template_context(self) -> dict[str, Any]:
        names, builtins = self._names()
        for name, value in builtins.items():
            names.setdefault(name, value)
        return names

    def _names(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.parent is not None:
            names, builtins = self.parent._names()
        else:
            names, builtins = {}, {}
        names.update(self.variables)
        names.update((k, to_view(v)) for k, v in self.outputs.items())
        names.update(self.extras)
        builtins.update(self.builtins)
        return names, builtins
