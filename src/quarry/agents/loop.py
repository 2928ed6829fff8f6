"""The turn loop of a default agent, as Oxy's: ask the model, run the tools it calls,
feed the results back, until it answers without calling a tool.

Limits (from the agent file, Oxy's names and defaults):

* ``max_iterations`` (15): model calls in one turn. Reaching it ends the turn with
  status ``max_iterations`` and an answer that says so (never a silent cut).
* ``max_tool_calls`` (10): tool calls in one turn. Calls past it are not run: the
  model is told the limit is reached, and its next call is offered no tools, so it
  answers from what it has.
* ``max_tool_concurrency`` (10): tool calls of one model response run at once.

A tool that fails (bad SQL, a refused write, invalid arguments) is not an error of
the turn: its message is the tool's result, which the model reads and acts on.
Everything that happens is reported to ``on_event`` as it happens (text deltas,
tool calls with their arguments, tool results, the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from quarry.agents.providers.base import Completion, Message, ModelProvider, ToolCall, Usage
from quarry.agents.tools.base import AgentTool, ToolFailed, ToolOutcome

TurnEvent = dict[str, Any]
EventSink = Callable[[TurnEvent], None]
TurnStatus = Literal["answered", "max_iterations"]
StopCheck = Callable[[], bool]

STOP_POLL_SECONDS = 0.2
"""How often a model call in flight looks at the turn's stop check."""


class TurnStopped(Exception):
    """The turn's stop check answered True (a cancel, a deadline, a shutdown): the
    model call in flight was abandoned and nothing more runs. The caller knows why."""


def _ignore(_event: TurnEvent) -> None:
    return None


class TurnJournal(Protocol):
    """Where a turn's model responses and tool results are checkpointed as they happen.

    A turn run again with the same journal (its step re-run after a worker died)
    replays what is there instead of calling the model or running the SQL again, and
    goes on from the first thing missing. Blocking: called on a thread."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, entry: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class TurnLimits:
    max_iterations: int = 15
    max_tool_calls: int = 10
    max_tool_concurrency: int = 10


@dataclass
class TurnResult:
    status: TurnStatus
    answer: str
    messages: list[Message] = field(default_factory=list)
    """The messages this turn added (the question, tool calls and results, the answer)."""
    model_calls: int = 0
    tool_calls: int = 0
    usage: Usage = field(default_factory=Usage)


@dataclass
class _Turn:
    provider: ModelProvider
    system: str
    tools: dict[str, AgentTool]
    limits: TurnLimits
    on_event: EventSink
    stream: bool
    messages: list[Message]
    journal: TurnJournal | None = None
    should_stop: StopCheck | None = None
    tool_calls: int = 0
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    async def ask_model(self) -> tuple[str, tuple[ToolCall, ...]]:
        offered = self.tool_calls < self.limits.max_tool_calls
        specs = [tool.spec for tool in self.tools.values()] if offered else []
        sink = (
            (lambda text: self.on_event({"type": "text_delta", "text": text}))
            if self.stream
            else None
        )
        key = f"model.{self.model_calls}"
        started = time.monotonic()
        completion = await self._replayed_completion(key)
        replayed = completion is not None
        if completion is None:
            completion = await self._unless_stopped(
                self.provider.complete(self.system, self.messages, specs, on_delta=sink)
            )
            await self._journal_put(key, _completion_entry(completion))
        self.model_calls += 1
        self.input_tokens += completion.usage.input_tokens
        self.output_tokens += completion.usage.output_tokens
        self.on_event(
            {
                "type": "model_response",
                "model": self.provider.name,
                "seconds": round(time.monotonic() - started, 6),
                "input_tokens": completion.usage.input_tokens,
                "output_tokens": completion.usage.output_tokens,
                "tool_calls": len(completion.tool_calls),
                "replayed": replayed,
            }
        )
        return completion.text, completion.tool_calls

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise TurnStopped()

    async def _unless_stopped(self, call: Coroutine[Any, Any, Completion]) -> Completion:
        """The model's answer, unless the turn is stopped first (the call is then
        cancelled: the SDK closes its connection, nothing is journaled)."""
        self.check_stop()
        if self.should_stop is None:
            return await call
        pending = asyncio.ensure_future(call)
        while True:
            done, _ = await asyncio.wait({pending}, timeout=STOP_POLL_SECONDS)
            if done:
                return pending.result()
            if self.should_stop():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending
                raise TurnStopped()

    async def _replayed_completion(self, key: str) -> Completion | None:
        if self.journal is None:
            return None
        entry = await asyncio.to_thread(self.journal.get, key)
        if entry is None:
            return None
        calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in entry["tool_calls"])
        usage = Usage(entry["input_tokens"], entry["output_tokens"])
        return Completion(entry["text"], calls, usage)

    async def _journal_put(self, key: str, entry: dict[str, Any]) -> None:
        if self.journal is not None:
            await asyncio.to_thread(self.journal.put, key, entry)

    async def run_tools(self, calls: Sequence[ToolCall]) -> list[Message]:
        gate = asyncio.Semaphore(max(1, self.limits.max_tool_concurrency))
        allowed: list[bool] = []
        response = self.model_calls - 1  # the model response these calls came in
        for _call in calls:  # decided in call order, before any runs
            allowed.append(self.tool_calls < self.limits.max_tool_calls)
            self.tool_calls += allowed[-1]

        async def one(call: ToolCall, permitted: bool, key: str) -> Message:
            if not permitted:
                content = (
                    f"Not run: this turn's tool call limit ({self.limits.max_tool_calls}, "
                    "max_tool_calls) is reached. Answer with what you have."
                )
                self.on_event(
                    {"type": "tool_result", "id": call.id, "name": call.name, "error": content}
                )
                return Message("tool", content, tool_call_id=call.id)
            async with gate:
                return await self._run_tool(call, key)

        keys = [f"tool.{response}.{index}" for index in range(len(calls))]
        return list(
            await asyncio.gather(
                *(one(c, ok, k) for c, ok, k in zip(calls, allowed, keys, strict=True))
            )
        )

    async def _run_tool(self, call: ToolCall, key: str) -> Message:
        base = {"type": "tool_result", "id": call.id, "name": call.name}
        entry = None if self.journal is None else await asyncio.to_thread(self.journal.get, key)
        if entry is not None:  # ran before this turn was resumed: not run again
            self.on_event({**base, **entry["event"], "replayed": True})
            return Message("tool", entry["content"], tool_call_id=call.id)
        self.on_event(
            {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
        )
        started = time.monotonic()
        try:
            outcome = await self._call(call)
        except ToolFailed as exc:
            event: dict[str, Any] = {"error": str(exc)}
            content = f"Error: {exc}"
        else:
            event = {"content": outcome.content, **outcome.detail}
            content = outcome.content
        await self._journal_put(key, {"content": content, "event": event})
        self.on_event({**base, **event, "seconds": round(time.monotonic() - started, 6)})
        return Message("tool", content, tool_call_id=call.id)

    async def _call(self, call: ToolCall) -> ToolOutcome:
        tool = self.tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            raise ToolFailed(f"there is no tool named {call.name!r} (the tools are: {known})")
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError as exc:
            raise ToolFailed(f"the arguments are not valid JSON ({exc})") from None
        if not isinstance(arguments, dict):
            raise ToolFailed("the arguments must be a JSON object")
        return await tool.call(arguments)


async def run_turn(
    provider: ModelProvider,
    system: str,
    prompt: str,
    *,
    tools: dict[str, AgentTool] | None = None,
    history: Sequence[Message] = (),
    limits: TurnLimits | None = None,
    on_event: EventSink = _ignore,
    stream: bool = True,
    journal: TurnJournal | None = None,
    should_stop: StopCheck | None = None,
    synthesize: bool = True,
) -> TurnResult:
    """One turn: ``prompt`` answered after ``history``, with ``tools``. When
    ``should_stop`` answers True (checked before each model call and tool batch, and
    while a model call is in flight) the turn ends with :class:`TurnStopped`. With
    ``synthesize=False`` (a routing agent's ``synthesize_results: false``) the output
    of the first tools called is the answer, as it came."""
    question = Message("user", prompt)
    turn = _Turn(
        provider,
        system,
        dict(tools or {}),
        limits or TurnLimits(),
        on_event,
        stream,
        [*history, question],
        journal,
        should_stop,
    )
    start = len(history)
    last_text = ""
    for _ in range(turn.limits.max_iterations):
        text, calls = await turn.ask_model()
        last_text = text or last_text
        turn.messages.append(Message("assistant", text, calls))
        if not calls:
            return _finish(turn, "answered", text, start)
        turn.check_stop()
        results = await turn.run_tools(calls)
        turn.messages.extend(results)
        if not synthesize:
            return _finish(turn, "answered", "\n\n".join(m.content for m in results), start)
    answer = (
        f"The agent stopped after {turn.limits.max_iterations} model calls (its "
        "max_iterations) without a final answer."
    )
    if last_text:
        answer += f" Its last words: {last_text}"
    return _finish(turn, "max_iterations", answer, start)


def _finish(turn: _Turn, status: TurnStatus, answer: str, start: int) -> TurnResult:
    result = TurnResult(
        status,
        answer,
        turn.messages[start:],
        turn.model_calls,
        turn.tool_calls,
        Usage(turn.input_tokens, turn.output_tokens),
    )
    turn.on_event(
        {
            "type": "done",
            "status": status,
            "model_calls": result.model_calls,
            "tool_calls": result.tool_calls,
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
        }
    )
    return result


def _completion_entry(completion: Completion) -> dict[str, Any]:
    return {
        "text": completion.text,
        "tool_calls": [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in completion.tool_calls
        ],
        "input_tokens": completion.usage.input_tokens,
        "output_tokens": completion.usage.output_tokens,
    }
