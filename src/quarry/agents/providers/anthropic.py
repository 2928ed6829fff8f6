"""Anthropic Messages through the official SDK (``api_url`` for a proxy or gateway).

The system prompt is a parameter, tool results are ``tool_result`` blocks of a user
message (consecutive results go into one message, as the API requires), and the
SDK retries 429/5xx with backoff honouring ``Retry-After``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anthropic

from quarry.agents.providers.base import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Completion,
    DeltaSink,
    Message,
    ToolCall,
    ToolSpec,
    Usage,
    error_message,
    provider_errors,
    shared_tls,
)

MAX_TOKENS = 4096
_THINKING_BUDGET = {"low": 1024, "medium": 4096, "high": 16384}


class AnthropicProvider:
    def __init__(
        self,
        name: str,
        model: str,
        api_key: str,
        *,
        api_url: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_RETRIES,
        reasoning_effort: str | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.reasoning_effort = reasoning_effort
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=api_url,
            default_headers=headers,
            timeout=timeout,
            max_retries=max_retries,
            http_client=anthropic.DefaultAsyncHttpxClient(verify=shared_tls()),
        )

    async def complete(
        self,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        on_delta: DeltaSink | None = None,
    ) -> Completion:
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": MAX_TOKENS,
            "system": system,
            "messages": _wire(messages),
        }
        if tools:
            request["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in tools
            ]
        if self.reasoning_effort is not None:
            budget = _THINKING_BUDGET.get(self.reasoning_effort, 4096)
            request["thinking"] = {"type": "enabled", "budget_tokens": budget}
            request["max_tokens"] = MAX_TOKENS + budget
        with provider_errors(self.name, anthropic, _said):
            if on_delta is None:
                return _completion(await self._client.messages.create(**request))
            async with self._client.messages.stream(**request) as stream:
                async for text in stream.text_stream:
                    on_delta(text)
                return _completion(await stream.get_final_message())

    async def close(self) -> None:
        await self._client.close()


def _wire(messages: Sequence[Message]) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            previous = wire[-1] if wire else None
            if (
                previous is not None
                and previous["role"] == "user"
                and isinstance(previous["content"], list)
                and all(b.get("type") == "tool_result" for b in previous["content"])
            ):
                previous["content"].append(block)
            else:
                wire.append({"role": "user", "content": [block]})
        elif message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = []
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks.extend(
                {"type": "tool_use", "id": c.id, "name": c.name, "input": _arguments(c.arguments)}
                for c in message.tool_calls
            )
            wire.append({"role": "assistant", "content": blocks})
        else:
            wire.append({"role": message.role, "content": message.content})
    return wire


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}  # the model wrote invalid JSON: it was told so in the tool result


def _completion(message: Any) -> Completion:
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "tool_use":
            calls.append(ToolCall(block.id, block.name, json.dumps(block.input)))
    usage = Usage(message.usage.input_tokens, message.usage.output_tokens)
    return Completion("".join(text), tuple(calls), usage)


def _said(exc: anthropic.APIStatusError) -> str:
    said = error_message(exc.body)
    return exc.message[:500] if said is None else said
