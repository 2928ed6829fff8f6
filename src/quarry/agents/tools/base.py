"""What a tool is to the loop: a spec offered to the model and an async call.

A tool that cannot do what the model asked raises :class:`ToolFailed`; the loop
feeds the message back to the model as the tool's result (so it can fix its SQL),
and the turn goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from quarry.agents.providers.base import ToolSpec


class ToolFailed(Exception):
    """The tool call failed; ``str()`` is said to the model (and shown to the user)."""


@dataclass(frozen=True)
class ToolOutcome:
    content: str
    """What the model reads as the tool's result."""
    detail: dict[str, Any] = field(default_factory=dict)
    """Facts for the user and the events (database, SQL, rows, truncation)."""


class AgentTool(Protocol):
    spec: ToolSpec

    async def call(self, arguments: dict[str, Any]) -> ToolOutcome: ...
