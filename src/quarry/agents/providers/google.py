"""Google Gemini through Google's official Gen AI SDK (``google-genai``).

Messages become ``contents`` of roles ``user`` and ``model``: a tool call is a
``functionCall`` part of the model's content, its result a ``functionResponse`` part
(named after the function, consecutive results in one content); the system prompt is
``system_instruction`` and tools are function declarations with their JSON schema as
is. ``api_url`` (a Quarry addition, for a gateway or proxy) replaces the API's base URL.

Retries are this adapter's, not the SDK's (whose retry ignores ``Retry-After``): 429
and 5xx answers are retried ``max_retries`` times with exponential backoff, waiting
what a ``Retry-After`` header asks for when there is one.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import httpx2
from google import genai
from google.genai import errors, types

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
    shared_tls,
)

RETRIED = frozenset({408, 429, 500, 502, 503, 504})
# The SDK sends through httpx2 (or httpx, given a client of its own): either's errors.
_TIMEOUTS = (httpx.TimeoutException, httpx2.TimeoutException)
_TRANSPORT = (httpx.TransportError, httpx2.TransportError)
BACKOFF_SECONDS = 0.5
MAX_WAIT_SECONDS = 60.0
_THINKING_BUDGET = {"low": 1024, "medium": 4096, "high": 16384}


class GoogleProvider:
    def __init__(
        self,
        name: str,
        model: str,
        api_key: str,
        *,
        api_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_RETRIES,
        reasoning_effort: str | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.max_retries = max_retries
        self.reasoning_effort = reasoning_effort
        options = types.HttpOptions(
            base_url=api_url,
            timeout=int(timeout * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
            async_client_args={"verify": shared_tls()},
        )
        self._client = genai.Client(api_key=api_key, http_options=options)

    async def complete(
        self,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        on_delta: DeltaSink | None = None,
    ) -> Completion:
        config = types.GenerateContentConfig(system_instruction=system or None)
        if tools:
            declarations = [
                types.FunctionDeclaration(
                    name=t.name, description=t.description, parameters_json_schema=t.parameters
                )
                for t in tools
            ]
            config.tools = [types.Tool(function_declarations=declarations)]
            config.automatic_function_calling = types.AutomaticFunctionCallingConfig(disable=True)
        if self.reasoning_effort is not None:
            budget = _THINKING_BUDGET.get(self.reasoning_effort, 4096)
            config.thinking_config = types.ThinkingConfig(thinking_budget=budget)
        contents = _contents(messages)

        async def once() -> Completion:
            models = self._client.aio.models
            if on_delta is None:
                response = await models.generate_content(
                    model=self.model, contents=contents, config=config
                )
                return _completion([response])
            stream: AsyncIterator[Any] = await models.generate_content_stream(
                model=self.model, contents=contents, config=config
            )
            chunks = [chunk async for chunk in _forward(stream, on_delta)]
            return _completion(chunks)

        return await self._with_retries(once)

    async def _with_retries(self, call: Callable[[], Any]) -> Completion:
        attempt = 0
        while True:
            try:
                result: Completion = await call()
                return result
            except errors.APIError as exc:
                if exc.code not in RETRIED or attempt >= self.max_retries:
                    raise ProviderError(
                        f"model {self.name!r}: the provider answered {exc.code}: "
                        f"{str(exc.message or exc.status)[:500]}",
                        model=self.name,
                        status=exc.code,
                    ) from None
                await asyncio.sleep(_wait(exc, attempt))
            except _TIMEOUTS:
                if attempt >= self.max_retries:
                    raise ProviderError(
                        f"model {self.name!r}: no answer within the timeout", model=self.name
                    ) from None
                await asyncio.sleep(_backoff(attempt))
            except _TRANSPORT as exc:
                if attempt >= self.max_retries:
                    raise ProviderError(
                        f"model {self.name!r}: cannot reach the provider ({exc})",
                        model=self.name,
                    ) from None
                await asyncio.sleep(_backoff(attempt))
            attempt += 1

    async def close(self) -> None:
        await self._client.aio.aclose()


async def _forward(stream: AsyncIterator[Any], on_delta: DeltaSink) -> AsyncIterator[Any]:
    async for chunk in stream:
        for part in _parts(chunk):
            if part.text and not part.thought:
                on_delta(part.text)
        yield chunk


def _backoff(attempt: int) -> float:
    jitter = 1 + random.random() / 4  # noqa: S311 (spreading retries, not a secret)
    return float(min(MAX_WAIT_SECONDS, BACKOFF_SECONDS * 2**attempt * jitter))


def _wait(exc: errors.APIError, attempt: int) -> float:
    """What ``Retry-After`` asks for (seconds), else the backoff."""
    headers = getattr(exc.response, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return min(MAX_WAIT_SECONDS, max(0.0, float(value))) if value else _backoff(attempt)
    except ValueError:
        return _backoff(attempt)


def _contents(messages: Sequence[Message]) -> list[types.Content]:
    names: dict[str, str] = {}
    contents: list[types.Content] = []
    for message in messages:
        if message.role == "tool":
            part = types.Part(
                function_response=types.FunctionResponse(
                    id=message.tool_call_id,
                    name=names.get(message.tool_call_id, "tool"),
                    response={"result": message.content},
                )
            )
            last = contents[-1] if contents else None
            if (
                last is not None
                and last.role == "user"
                and last.parts
                and all(p.function_response is not None for p in last.parts)
            ):
                last.parts.append(part)
            else:
                contents.append(types.Content(role="user", parts=[part]))
        elif message.role == "assistant":
            parts = [types.Part(text=message.content)] if message.content else []
            for call in message.tool_calls:
                names[call.id] = call.name
                parts.append(
                    types.Part(
                        function_call=types.FunctionCall(
                            id=call.id, name=call.name, args=_arguments(call.arguments)
                        )
                    )
                )
            contents.append(types.Content(role="model", parts=parts or [types.Part(text="")]))
        else:
            contents.append(types.Content(role="user", parts=[types.Part(text=message.content)]))
    return contents


def _arguments(raw: str) -> dict[str, Any]:
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}  # the model wrote invalid JSON: it was told so in the tool result
    return parsed if isinstance(parsed, dict) else {}


def _parts(response: Any) -> list[Any]:
    candidates = response.candidates or []
    if not candidates or candidates[0].content is None:
        return []
    return list(candidates[0].content.parts or [])


def _completion(responses: list[Any]) -> Completion:
    text: list[str] = []
    calls: list[ToolCall] = []
    usage = Usage()
    for response in responses:
        for part in _parts(response):
            if part.text and not part.thought:
                text.append(part.text)
            if part.function_call is not None:
                call = part.function_call
                calls.append(
                    ToolCall(
                        call.id or f"call_{uuid.uuid4().hex[:12]}",
                        call.name or "",
                        json.dumps(call.args or {}),
                    )
                )
        meta = response.usage_metadata
        if meta is not None:  # the last chunk's counts cover the whole answer
            usage = Usage(meta.prompt_token_count or 0, meta.candidates_token_count or 0)
    return Completion("".join(text), tuple(calls), usage)
