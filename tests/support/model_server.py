"""A scripted model server: OpenAI Chat Completions, Anthropic Messages and Gemini
``generateContent`` on a real socket.

No model can be reached from CI, so agent tests talk to this server through the real
``openai``, ``anthropic`` and ``google-genai`` SDKs (``base_url`` pointed here). A test writes a
script: each entry optionally matches the last message of a request (its text, or
the content of the last tool result) and answers with text, tool calls, or an HTTP
error (429 with ``Retry-After``, 500...). Requests take the first unused entry that
matches, in order; every request is recorded (with the time it arrived) so a test
can assert what the model was sent and when.

Every protocol streams (SSE chunks as the providers frame them) when the request asks
for it (``stream: true``; Gemini's ``:streamGenerateContent?alt=sse``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass(frozen=True)
class Call:
    """A tool call the scripted model makes."""

    name: str
    arguments: dict[str, Any]


@dataclass
class Reply:
    """One scripted answer: text and/or tool calls, or an HTTP error.

    ``match`` (a substring of the last message's text or tool result) picks which
    request this entry answers; None answers any. ``delay`` holds the answer back
    that many seconds (to test client timeouts)."""

    text: str = ""
    calls: list[Call] = field(default_factory=list)
    match: str | None = None
    status: int = 200
    error: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    input_tokens: int = 11
    output_tokens: int = 7
    together: int = 0
    """Hold this answer until ``together`` requests holding such answers are in the
    server at once (at most ``ModelServer.together_timeout`` seconds; then a 500 says
    how many came): proves requests were concurrent without timing anything."""


@dataclass
class Seen:
    """A request the server received."""

    protocol: str  # "openai" | "anthropic"
    body: dict[str, Any]
    headers: dict[str, str]
    at: float
    last: str  # the text the script matched against
    path: str = ""
    query: str = ""


def text_reply(text: str, match: str | None = None) -> Reply:
    return Reply(text=text, match=match)


def tool_reply(name: str, match: str | None = None, **arguments: Any) -> Reply:
    return Reply(calls=[Call(name, arguments)], match=match)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                parts.append(_content_text(block.get("content", "")))
        return "\n".join(parts)
    return ""


def _last_text(messages: list[dict[str, Any]]) -> str:
    return _content_text(messages[-1].get("content")) if messages else ""


class ModelServer:
    """The server and its script. Use as a context manager (it runs on its own thread)."""

    def __init__(self, script: list[Reply] | None = None) -> None:
        self.script: list[Reply] = list(script or [])
        self.used: list[bool] = [False] * len(self.script)
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        """The most chat requests the server has held at once."""
        self.together_timeout = 60.0
        self._together: asyncio.Condition | None = None
        self._waiting = 0
        self.embedding_errors: list[int] = []
        """HTTP statuses the next embeddings requests answer with, one each, in order
        (a provider's embeddings endpoint failing for a while)."""
        self.port = _free_port()
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                # Azure OpenAI's path for a deployment (the api-version is a query).
                Route(
                    "/openai/deployments/{deployment}/chat/completions",
                    self._openai,
                    methods=["POST"],
                ),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                # Gemini: /v1[beta]/models/<model>:generateContent | :streamGenerateContent
                Route("/{version}/models/{target}", self._gemini, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            # A delayed answer whose client was killed must not hold the test's exit.
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def model_entries(
        self,
        key_var: str,
        *,
        anthropic_key_var: str | None = None,
        google_key_var: str | None = None,
    ) -> list[dict[str, Any]]:
        """``config.yml`` ``models:`` entries served here: ``openai-4o-mini`` (the
        demo's agents' model, ``model_ref`` ``gpt-4o-mini``) and ``gpt``
        (``gpt-test``), OpenAI-compatible with the key from ``key_var``; with
        ``anthropic_key_var`` also ``claude`` (``claude-test``, Anthropic Messages),
        with ``google_key_var`` ``gemini`` (``gemini-test``, Gemini)."""
        entries: list[dict[str, Any]] = [
            {
                "name": name,
                "vendor": "openai",
                "model_ref": ref,
                "key_var": key_var,
                "api_url": self.openai_url,
            }
            for name, ref in (("openai-4o-mini", "gpt-4o-mini"), ("gpt", "gpt-test"))
        ]
        if anthropic_key_var is not None:
            entries.append(
                {
                    "name": "claude",
                    "vendor": "anthropic",
                    "model_ref": "claude-test",
                    "key_var": anthropic_key_var,
                    "api_url": self.anthropic_url,
                }
            )
        if google_key_var is not None:
            entries.append(
                {
                    "name": "gemini",
                    "vendor": "google",
                    "model_ref": "gemini-test",
                    "key_var": google_key_var,
                    "api_url": self.google_url,
                }
            )
        return entries

    def serve_models(
        self,
        root: Path,
        key_var: str,
        *,
        anthropic_key_var: str | None = None,
        google_key_var: str | None = None,
    ) -> None:
        """Make the ``models:`` of the workspace at ``root`` this server's
        (:meth:`model_entries`), the rest of its ``config.yml`` as it was."""
        config = yaml.safe_load((root / "config.yml").read_text()) or {}
        config["models"] = self.model_entries(
            key_var, anthropic_key_var=anthropic_key_var, google_key_var=google_key_var
        )
        (root / "config.yml").write_text(yaml.safe_dump(config))

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def google_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, *replies: Reply) -> None:
        with self._lock:
            self.script.extend(replies)
            self.used.extend([False] * len(replies))

    def __enter__(self) -> ModelServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the scripted model server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def _next(self, protocol: str, request: Request, body: dict[str, Any]) -> Reply:
        if protocol == "google":
            last = _gemini_last_text(body.get("contents", []))
        else:
            last = _last_text(body.get("messages", []))
        with self._lock:
            self.requests.append(
                Seen(
                    protocol,
                    body,
                    dict(request.headers),
                    time.monotonic(),
                    last,
                    request.url.path,
                    str(request.url.query),
                )
            )
            for index, reply in enumerate(self.script):
                if not self.used[index] and (reply.match is None or reply.match in last):
                    self.used[index] = True
                    return reply
        return Reply(status=500, error=f"the script has no answer for: {last[:200]!r}")

    async def _answer(self, protocol: str, request: Request) -> Response:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._answer_now(protocol, request)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _gather(self, reply: Reply) -> str | None:
        """Wait until ``reply.together`` held answers are here; an error text if not."""
        if self._together is None:
            self._together = asyncio.Condition()
        async with self._together:
            self._waiting += 1
            self._together.notify_all()
            try:
                await asyncio.wait_for(
                    self._together.wait_for(lambda: self._waiting >= reply.together),
                    self.together_timeout,
                )
            except TimeoutError:
                return f"only {self._waiting} of {reply.together} requests came together"
        return None

    async def _answer_now(self, protocol: str, request: Request) -> Response:
        body = await request.json()
        reply = self._next(protocol, request, body)
        if reply.together:
            problem = await self._gather(reply)
            if problem is not None:
                return JSONResponse(_error_body(protocol, 500, problem), status_code=500)
        if reply.delay:
            await asyncio.sleep(reply.delay)  # the model "thinking": tests client timeouts
        if reply.status != 200:
            return JSONResponse(
                _error_body(protocol, reply.status, reply.error or "scripted error"),
                status_code=reply.status,
                headers=reply.headers,
            )
        model = str(body.get("model", "scripted"))
        if protocol == "openai":
            if body.get("stream"):
                return _sse(_openai_chunks(model, reply, body))
            return JSONResponse(_openai_message(model, reply))
        if body.get("stream"):
            return _sse(_anthropic_events(model, reply))
        return JSONResponse(_anthropic_message(model, reply))

    async def _openai(self, request: Request) -> Response:
        return await self._answer("openai", request)

    async def _anthropic(self, request: Request) -> Response:
        return await self._answer("anthropic", request)

    async def _embeddings(self, request: Request) -> Response:
        """OpenAI embeddings: a deterministic bag of words hashed into 64 dimensions,
        so texts sharing words are similar (retrieval can be tested)."""
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        with self._lock:
            self.requests.append(
                Seen("openai", body, dict(request.headers), time.monotonic(), "", request.url.path)
            )
            status = self.embedding_errors.pop(0) if self.embedding_errors else 200
        if status != 200:
            problem = _error_body("openai", status, "scripted embeddings error")
            return JSONResponse(problem, status_code=status)
        data = [
            {"object": "embedding", "index": i, "embedding": _bag_of_words(str(text))}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(str(t).split()) for t in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "scripted"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _gemini(self, request: Request) -> Response:
        model, _, method = str(request.path_params["target"]).partition(":")
        body = await request.json()
        reply = self._next("google", request, body)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return JSONResponse(
                _error_body("google", reply.status, reply.error or "scripted error"),
                status_code=reply.status,
                headers=reply.headers,
            )
        if method == "streamGenerateContent":
            return _sse(_gemini_chunks(model, reply))
        if method != "generateContent":
            return JSONResponse(_error_body("google", 404, f"no method {method}"), 404)
        return JSONResponse(_gemini_response(model, reply, reply.text, reply.calls, True))


def _error_body(protocol: str, status: int, message: str) -> dict[str, Any]:
    kind = {429: "rate_limit_error", 500: "api_error", 400: "invalid_request_error"}.get(
        status, "api_error"
    )
    if protocol == "openai":
        return {"error": {"message": message, "type": kind, "code": str(status)}}
    if protocol == "google":
        state = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}
        return {
            "error": {"code": status, "message": message, "status": state.get(status, "INTERNAL")}
        }
    return {"type": "error", "error": {"type": kind, "message": message}}


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream")


def _call_id() -> str:
    return "call_" + uuid.uuid4().hex[:16]


def _openai_message(model: str, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.calls:
        message["tool_calls"] = [
            {
                "id": _call_id(),
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in reply.calls
        ]
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        },
    }


def _words(text: str) -> list[str]:
    """``text`` in a few pieces, so a streaming client sees several deltas."""
    pieces = text.split(" ")
    return [piece + (" " if i < len(pieces) - 1 else "") for i, piece in enumerate(pieces)]


async def _openai_chunks(model: str, reply: Reply, body: dict[str, Any]) -> AsyncIterator[str]:
    base = {
        "id": "chatcmpl-" + uuid.uuid4().hex[:12],
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        data = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(data)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    if reply.text:
        for piece in _words(reply.text):
            yield chunk({"content": piece})
    for index, call in enumerate(reply.calls):
        arguments = json.dumps(call.arguments)
        half = len(arguments) // 2
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": _call_id(),
                        "type": "function",
                        "function": {"name": call.name, "arguments": arguments[:half]},
                    }
                ]
            }
        )
        yield chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]})
    yield chunk({}, "tool_calls" if reply.calls else "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def _anthropic_blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    for call in reply.calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": "toolu_" + uuid.uuid4().hex[:16],
                "name": call.name,
                "input": call.arguments,
            }
        )
    return blocks


def _anthropic_message(model: str, reply: Reply) -> dict[str, Any]:
    return {
        "id": "msg_" + uuid.uuid4().hex[:16],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _anthropic_blocks(reply),
        "stop_reason": "tool_use" if reply.calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


async def _anthropic_events(model: str, reply: Reply) -> AsyncIterator[str]:
    def event(kind: str, data: dict[str, Any]) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    start = _anthropic_message(model, reply)
    start["content"] = []
    start["stop_reason"] = None
    start["usage"] = {"input_tokens": reply.input_tokens, "output_tokens": 0}
    yield event("message_start", {"message": start})
    for index, block in enumerate(_anthropic_blocks(reply)):
        if block["type"] == "text":
            yield event(
                "content_block_start",
                {"index": index, "content_block": {"type": "text", "text": ""}},
            )
            for piece in _words(block["text"]):
                yield event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "text_delta", "text": piece}},
                )
        else:
            opened = {**block, "input": {}}
            yield event("content_block_start", {"index": index, "content_block": opened})
            arguments = json.dumps(block["input"])
            half = len(arguments) // 2
            for part in (arguments[:half], arguments[half:]):
                yield event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "input_json_delta", "partial_json": part}},
                )
        yield event("content_block_stop", {"index": index})
    yield event(
        "message_delta",
        {
            "delta": {
                "stop_reason": "tool_use" if reply.calls else "end_turn",
                "stop_sequence": None,
            },
            "usage": {"output_tokens": reply.output_tokens},
        },
    )
    yield event("message_stop", {})


def _gemini_last_text(contents: list[dict[str, Any]]) -> str:
    if not contents:
        return ""
    texts = []
    for part in contents[-1].get("parts", []):
        if "text" in part:
            texts.append(str(part["text"]))
        elif "functionResponse" in part:
            response = part["functionResponse"].get("response", {})
            texts.append(str(response.get("result", response)))
    return "\n".join(texts)


def _gemini_response(
    model: str, reply: Reply, text: str, calls: list[Call], last: bool
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    parts.extend({"functionCall": {"name": c.name, "args": c.arguments}} for c in calls)
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    body: dict[str, Any] = {"candidates": [candidate], "modelVersion": model}
    if last:
        candidate["finishReason"] = "STOP"
        body["usageMetadata"] = {
            "promptTokenCount": reply.input_tokens,
            "candidatesTokenCount": reply.output_tokens,
            "totalTokenCount": reply.input_tokens + reply.output_tokens,
        }
    return body


async def _gemini_chunks(model: str, reply: Reply) -> AsyncIterator[str]:
    pieces = _words(reply.text) if reply.text else []
    for piece in pieces[:-1]:
        yield f"data: {json.dumps(_gemini_response(model, reply, piece, [], False))}\r\n\r\n"
    final = _gemini_response(model, reply, pieces[-1] if pieces else "", reply.calls, True)
    yield f"data: {json.dumps(final)}\r\n\r\n"


def _bag_of_words(text: str, dims: int = 64) -> list[float]:
    import hashlib
    import re

    vector = [0.0] * dims
    for word in re.findall(r"[a-z0-9_]+", text.lower()):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dims] += 1.0
    return vector
