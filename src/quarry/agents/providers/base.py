"""The provider port: what the agent loop needs from a model, whatever the vendor.

Messages and tool calls are Quarry's own small types; each adapter translates them
to its SDK's wire format and back. A call either returns a :class:`Completion` or
raises :class:`ProviderError` (after the SDK's own retries), never a vendor type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from quarry.core.errors import QuarryError

Role = Literal["user", "assistant", "tool"]
DeltaSink = Callable[[str], None]
"""Receives the answer's text as it streams (one piece at a time)."""

DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 3


class ProviderError(QuarryError):
    """The model could not be called (after retries); the message names the model."""

    status_code = 502
    code = "model_error"


class ModelNotConfigured(QuarryError):
    status_code = 422
    code = "model_not_configured"


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model: name, description and JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """The raw JSON text the model wrote (it may not parse: that is fed back to it)."""


@dataclass(frozen=True)
class Message:
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    """For ``role == "tool"``: the call this is the result of."""


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)


class ModelProvider(Protocol):
    """One configured model (``config.yml`` ``models:`` entry) of one vendor."""

    name: str

    async def complete(
        self,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        on_delta: DeltaSink | None = None,
    ) -> Completion:
        """The model's next message. With ``on_delta`` the answer streams into it."""
        ...

    async def close(self) -> None: ...
