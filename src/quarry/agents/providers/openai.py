"""OpenAI Chat Completions through the official SDK; also every OpenAI-compatible
server (Ollama, vLLM, Azure OpenAI's ``/openai/v1``) reached through ``api_url``.

Retries are the SDK's own: 429 and 5xx are retried with exponential backoff and a
server's ``Retry-After`` is honoured (tests/integration/agents pin both).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import openai

from quarry.agents.providers.base import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Completion,
    DeltaSink,
    Message,
    ProviderError,
    ToolCall,
    ToolSpec,
    Usage,
    error_message,
    provider_errors,
    shared_tls,
)


class OpenAIProvider:
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
        azure_deployment: str | None = None,
        azure_api_version: str | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.reasoning_effort = reasoning_effort
        self._client: openai.AsyncOpenAI
        if azure_deployment is not None or azure_api_version is not None:
            # Azure OpenAI: api_url is the resource endpoint; the SDK builds the
            # deployment path, the api-version query and the api-key header.
            if api_url is None:
                raise ProviderError(
                    f"model {name!r}: an Azure OpenAI model needs api_url (the resource "
                    "endpoint, https://NAME.openai.azure.com)",
                    model=name,
                )
            self._client = openai.AsyncAzureOpenAI(
                api_key=api_key,
                azure_endpoint=api_url,
                azure_deployment=azure_deployment,
                api_version=azure_api_version,
                default_headers=headers,
                timeout=timeout,
                max_retries=max_retries,
                http_client=openai.DefaultAsyncHttpxClient(verify=shared_tls()),
            )
            return
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=api_url,
            default_headers=headers,
            timeout=timeout,
            max_retries=max_retries,
            http_client=openai.DefaultAsyncHttpxClient(verify=shared_tls()),
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
            "messages": [{"role": "system", "content": system}, *map(_wire, messages)],
        }
        if tools:
            request["tools"] = [_tool(spec) for spec in tools]
        if self.reasoning_effort is not None:
            request["reasoning_effort"] = self.reasoning_effort
        with provider_errors(self.name, openai, _said):
            if on_delta is None:
                return _completion(await self._client.chat.completions.create(**request))
            return await self._stream(request, on_delta)

    async def _stream(self, request: dict[str, Any], on_delta: DeltaSink) -> Completion:
        stream = await self._client.chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage = Usage()
        async for chunk in stream:
            if chunk.usage is not None:
                usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content:
                    text.append(delta.content)
                    on_delta(delta.content)
                for part in delta.tool_calls or ():
                    call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] = part.id or call["id"]
                    if part.function is not None:
                        call["name"] += part.function.name or ""
                        call["arguments"] += part.function.arguments or ""
        found = tuple(
            ToolCall(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())
        )
        return Completion("".join(text), found, usage)

    async def close(self) -> None:
        await self._client.close()


def _wire(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    wire: dict[str, Any] = {"role": message.role, "content": message.content or None}
    if message.tool_calls:
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    elif message.role == "user":
        wire["content"] = message.content
    return wire


def _tool(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": spec.parameters,
        },
    }


def _completion(response: Any) -> Completion:
    message = response.choices[0].message
    calls = tuple(
        ToolCall(call.id, call.function.name, call.function.arguments)
        for call in message.tool_calls or ()
        if getattr(call, "function", None) is not None
    )
    usage = Usage()
    if response.usage is not None:
        usage = Usage(response.usage.prompt_tokens, response.usage.completion_tokens)
    return Completion(message.content or "", calls, usage)


def _said(exc: openai.APIStatusError) -> str:
    said = error_message(exc.body)
    if said is not None:
        return said
    return json.dumps(exc.body)[:500] if exc.body is not None else exc.message[:500]
