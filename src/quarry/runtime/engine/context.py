"""What a step runs with: the run's services (``RunContext``) and the names in
scope (``Scope``: variables, earlier outputs, the current loop value)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from quarry.runtime.connectors.registry import Connections
from quarry.runtime.engine.journal import StepJournal
from quarry.runtime.engine.results import Output
from quarry.runtime.engine.views import to_view
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
    on_event: EventSink = _ignore
    on_export: ExportSink | None = None
    should_stop: Callable[[], bool] | None = None
    workflows: tuple[str, ...] = ()

    def emit(self, event: str, step: str, **fields: Any) -> None:
        self.on_event({"event": event, "step": step, "at": time.time(), **fields})

    def entering(self, workflow: str) -> RunContext:
        return replace(self, workflows=(*self.workflows, workflow))


@dataclass
class Scope:
    """Names visible to templates; a child sees its parent's names and adds its own."""

    variables: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Output] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    parent: Scope | None = None

    def child(self, **extras: Any) -> Scope:
        return Scope(extras=extras, parent=self)

    def template_context(self) -> dict[str, Any]:
        names = self.parent.template_context() if self.parent is not None else {}
        names.update(self.variables)
        names.update((k, to_view(v)) for k, v in self.outputs.items())
        names.update(self.extras)
        return names
