"""The provider port: what the agent loop needs from a model, whatever the vendor.

Messages and tool calls are Quarry's own small types; each adapter translates them
to its SDK's wire format and back. A call either returns a :class:`Completion` or
raises :class:`ProviderError` (after the SDK's own retries), never a vendor type.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol

from quarry.core.errors import QuarryError

Role = Literal["user", "assistant", "tool"]
DeltaSink = Callable[[str], None]
"""Receives the answer's text as it streams (one piece at a time)."""

DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 3


@functools.cache
def shared_tls() -> ssl.SSLContext:
    """The TLS context every model client of the process verifies servers with: the
    SDKs' own default, built once. Each SDK client made its own, loading the CA store
    again (~17 ms, most of a turn's own cost); a context is safe to share."""
    import httpcore2

    return httpcore2.default_ssl_context()


class ProviderError(QuarryError):
    """The model could not be called (after retries); the message names the model."""

    status_code = 502
    code = "model_error"


class ModelNotConfigured(QuarryError):
    status_code = 422
    code = "model_not_configured"


class SdkErrors(Protocol):
    """The errors both official SDKs (``openai``, ``anthropic``) raise once their own
    retries are spent; either module satisfies this protocol as it is."""

    @property
    def APIStatusError(self) -> type[Exception]: ...

    @property
    def APITimeoutError(self) -> type[Exception]: ...

    @property
    def APIConnectionError(self) -> type[Exception]: ...


class _ProviderErrors:
    """Turns an SDK's failure inside the block into a :class:`ProviderError` naming the
    model, so both adapters report the same three kinds of failure in the same words.

    ``said`` reads the provider's own explanation out of a status error.
    """

    def __init__(self, model: str, sdk: SdkErrors, said: Callable[[Any], str]) -> None:
        self._model = model
        self._sdk = sdk
        self._said = said

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        model = self._model
        if isinstance(exc, self._sdk.APIStatusError):
            status = getattr(exc, "status_code", None)
            raise ProviderError(
                f"model {model!r}: the provider answered {status}: {self._said(exc)}",
                model=model,
                status=status,
            ) from None
        if isinstance(exc, self._sdk.APITimeoutError):
            raise ProviderError(
                f"model {model!r}: no answer within the timeout", model=model
            ) from None
        if isinstance(exc, self._sdk.APIConnectionError):
            message = getattr(exc, "message", str(exc))
            raise ProviderError(
                f"model {model!r}: cannot reach the provider ({message})", model=model
            ) from None


def provider_errors(model: str, sdk: SdkErrors, said: Callable[[Any], str]) -> _ProviderErrors:
    """``with provider_errors(name, openai, _said):`` around an SDK call (see above)."""
    return _ProviderErrors(model, sdk, said)


def error_message(body: object) -> str | None:
    """The ``error.message`` (or top-level ``message``) of a provider's JSON error body,
    cut to 500 characters; ``None`` when the body has none."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:500]
    return None


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
