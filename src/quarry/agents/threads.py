"""Threads: conversations with an agent, each turn a durable run on the queue.

Posting a message writes, in one transaction, the user's message, a pending reply
and the turn's run (``target_kind = 'agent'``) with its task. A worker executes the
run (:func:`execute_turn`, registered as the ``agent`` run kind): one turn of the
agent with the thread's earlier turns as history, every model response and tool
result journaled as a step of the run, so a worker killed mid-turn is replaced and
the turn goes on from the last journaled step without repeating a model call or a
query. What happens is written as run events (``agent.*``), which any replica
streams (docs/agents.md, "Threads": the SSE event format).

The reply is filled once, when the turn ends with an answer; a failed or cancelled
turn leaves it pending and its run says why. Turns that did not end with an answer
are not part of the history the model sees later.

Per-tenant ceilings (concurrent turns, tokens per UTC day) are checked in the posting
transaction and refused with a 429 naming the limit.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from quarry.agents.loop import TurnResult, TurnStopped
from quarry.agents.pool import turn_connections
from quarry.agents.providers.base import Message, ToolCall
from quarry.agents.tasks import StepTurnJournal
from quarry.catalog.reader import Catalog
from quarry.core.clock import utcnow
from quarry.core.errors import BadRequest, Conflict, NotFound, QuarryError
from quarry.runtime.connectors.base import Connector
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.engine.runner import Limits
from quarry.runtime.engine.watchdog import Watchdog
from quarry.runtime.queue import TaskQueue
from quarry.runtime.runs.events import RunEvent
from quarry.runtime.runs.executor import register_run_kind
from quarry.runtime.runs.journal import DurableJournal
from quarry.runtime.runs.service import RunRequest, cancel_run, plan_run, write_runs
from quarry.runtime.source import RevisionSource
from quarry.store import threads as tq
from quarry.store.db import Engine
from quarry.store.runs import RunRow
from quarry.store.threads import PENDING, MessageRow, ThreadRow
from quarry.store.workspaces import WorkspaceRow

AGENT_RUN_KIND = "agent"
TURN_STEP = "turn"
"""The step key under which a thread turn's model responses and tool results are
journaled (``turn.agent.model.N``, ``turn.agent.tool.N.I``)."""
MAX_MESSAGE_CHARS = 32_000
TEXT_FLUSH_SECONDS = 0.05
"""Streamed text is written as one ``agent.text`` event at most this often."""


class TurnCeilingReached(QuarryError):
    status_code = 429
    code = "agent_ceiling_reached"

    def __init__(self, message: str, retry_after: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Ceilings:
    """Per-tenant limits on thread turns (0: none)."""

    concurrent_turns: int = 0
    tokens_per_day: int = 0


@dataclass(frozen=True)
class Turn:
    thread: ThreadRow
    question: MessageRow
    reply: MessageRow
    run: RunRow


def _new_id() -> str:
    return uuid.uuid4().hex


def _title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 80 else line[:79] + "…"


def check_message(content: str) -> str:
    if not content.strip():
        raise BadRequest("the message is empty", parameter="content")
    if len(content) > MAX_MESSAGE_CHARS:
        raise BadRequest(
            f"the message has {len(content)} characters; at most {MAX_MESSAGE_CHARS}",
            parameter="content",
        )
    return content


def _agent_name(catalog: Catalog, workspace: WorkspaceRow, agent: str) -> str:
    """The agent's definition name in the current revision (NotFound naming it)."""
    from quarry.agents.service import agent_name  # no SDK imports: service imports lazily

    name = agent_name(agent)
    revision_id = catalog.resolve(workspace, None)
    try:
        catalog.definition(workspace, revision_id, AGENT_RUN_KIND, name)
    except NotFound:
        raise NotFound(f"no agent {agent!r} in workspace {workspace.name!r}", agent=agent) from None
    return name


def create_thread(
    engine: Engine,
    catalog: Catalog,
    workspace: WorkspaceRow,
    agent: str,
    owner: str,
    title: str | None = None,
) -> ThreadRow:
    name = _agent_name(catalog, workspace, agent)
    now = utcnow()
    thread = ThreadRow(
        id=_new_id(),
        tenant_id=workspace.tenant_id,
        workspace_id=workspace.id,
        agent=name,
        owner=owner,
        title=(title or "").strip()[:200],
        created_at=now,
        updated_at=now,
    )
    with engine.begin() as conn:
        tq.insert_thread(conn, thread)
    return thread


def _check_ceilings(conn: Any, tenant_id: str, ceilings: Ceilings) -> None:
    if ceilings.concurrent_turns > 0:
        busy = tq.turns_in_flight(conn, tenant_id, ceilings.concurrent_turns)
        if busy >= ceilings.concurrent_turns:
            raise TurnCeilingReached(
                f"tenant {tenant_id!r} has {busy} agent turns queued or running, the "
                f"ceiling of concurrent turns ({ceilings.concurrent_turns}, "
                "QUARRY_AGENT_MAX_CONCURRENT_TURNS); retry when one has finished",
                retry_after=5,
                limit="concurrent_turns",
                ceiling=ceilings.concurrent_turns,
            )
    if ceilings.tokens_per_day > 0:
        now = datetime.now(UTC)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        used = tq.tokens_since(conn, tenant_id, midnight)
        if used >= ceilings.tokens_per_day:
            tomorrow = midnight + timedelta(days=1)
            raise TurnCeilingReached(
                f"tenant {tenant_id!r} has used {used} model tokens today (UTC), the "
                f"ceiling of tokens per day ({ceilings.tokens_per_day}, "
                "QUARRY_AGENT_MAX_TOKENS_PER_DAY); it resets at midnight UTC",
                retry_after=max(1, int((tomorrow - now).total_seconds())),
                limit="tokens_per_day",
                ceiling=ceilings.tokens_per_day,
                used=used,
            )


def post_message(
    engine: Engine,
    queue: TaskQueue,
    catalog: Catalog,
    workspace: WorkspaceRow,
    thread: ThreadRow,
    content: str,
    *,
    ceilings: Ceilings = Ceilings(),
    request_id: str | None = None,
    max_attempts: int = 3,
) -> Turn:
    """Queue a turn answering ``content``: the question, a pending reply and the run
    (with its task), all in one transaction or nothing."""
    content = check_message(content)
    revision_id = catalog.resolve(workspace, None)
    request = RunRequest(
        target_kind=AGENT_RUN_KIND,
        target_name=thread.agent,
        variables={"thread_id": thread.id},
        origin="thread",
        request_id=request_id,
    )
    planned = plan_run(
        workspace.tenant_id, workspace.id, revision_id, request, max_attempts=max_attempts
    )
    now = utcnow()
    with engine.begin() as conn:
        messages = tq.get_messages(conn, thread.id)
        if messages and _in_flight(messages[-1]):
            raise Conflict(
                f"thread {thread.id} has a turn in progress (reply {messages[-1].id}); "
                "wait for it to end or cancel it",
                thread=thread.id,
            )
        _check_ceilings(conn, workspace.tenant_id, ceilings)
        (run,) = write_runs(conn, queue, [planned])
        seq = tq.next_seq(conn, thread.id)
        question = MessageRow(
            _new_id(), thread.id, thread.tenant_id, seq, "user", content, "sent", None, {},
            0, 0, now, now,
        )  # fmt: skip
        reply = MessageRow(
            _new_id(), thread.id, thread.tenant_id, seq + 1, "assistant", "", PENDING, run.id,
            {}, 0, 0, now, None, run.state, None,
        )  # fmt: skip
        tq.insert_message(conn, question)
        tq.insert_message(conn, reply)
        if not thread.title and seq == 0:
            thread = replace(thread, title=_title(content))
            tq.set_title(conn, thread.id, thread.title)
        tq.touch_thread(conn, thread.id)
    return Turn(thread, question, reply, run)


def _in_flight(message: MessageRow) -> bool:
    return message.status == PENDING and message.run_state in ("queued", "running")


def reply_status(message: MessageRow) -> str:
    """What the chat shows for a reply: its own status once filled, else its run's
    (``queued``, ``running``, ``failed``, ``cancelled``)."""
    if message.status != PENDING:
        return message.status
    if message.run_state in ("failed", "cancelled", "queued", "running"):
        return message.run_state
    return "failed"  # the run ended without filling the reply: it cannot be answered


def cancel_turn(engine: Engine, queue: TaskQueue, thread: ThreadRow) -> MessageRow | None:
    """Cancel the turn in progress (None when there is none)."""
    with engine.connect() as conn:
        messages = tq.get_messages(conn, thread.id)
    if not messages or not _in_flight(messages[-1]) or messages[-1].run_id is None:
        return None
    cancel_run(engine, queue, thread.tenant_id, messages[-1].run_id)
    with engine.connect() as conn:
        return tq.get_reply_of_run(conn, messages[-1].run_id)


def retry_turn(
    engine: Engine,
    queue: TaskQueue,
    catalog: Catalog,
    workspace: WorkspaceRow,
    thread: ThreadRow,
    *,
    ceilings: Ceilings = Ceilings(),
    request_id: str | None = None,
) -> Turn:
    """Ask the last question again, when its turn failed, was cancelled or stopped at
    ``max_iterations``."""
    with engine.connect() as conn:
        messages = tq.get_messages(conn, thread.id)
    if len(messages) < 2:
        raise Conflict(f"thread {thread.id} has no turn to retry", thread=thread.id)
    question, reply = messages[-2], messages[-1]
    status = reply_status(reply)
    if status not in ("failed", "cancelled", "max_iterations"):
        raise Conflict(
            f"the last turn of thread {thread.id} is {status}; only a failed, cancelled or "
            "max_iterations turn is retried",
            thread=thread.id,
            status=status,
        )
    return post_message(
        engine,
        queue,
        catalog,
        workspace,
        thread,
        question.content,
        ceilings=ceilings,
        request_id=request_id,
    )


# -- history ----------------------------------------------------------------------


def _message_json(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        body["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
        ]
    if message.tool_call_id:
        body["tool_call_id"] = message.tool_call_id
    return body


def _message_from_json(body: dict[str, Any]) -> Message:
    calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in body.get("tool_calls", ()))
    return Message(body["role"], body.get("content", ""), calls, body.get("tool_call_id", ""))


def history_before(messages: list[MessageRow], reply: MessageRow) -> list[Message]:
    """The model's view of the thread before ``reply``'s turn: each earlier question
    whose turn ended with an answer, followed by that turn's messages."""
    history: list[Message] = []
    by_seq = {m.seq: m for m in messages}
    for message in messages:
        if message.role != "assistant" or message.seq >= reply.seq:
            continue
        if message.status not in ("answered", "max_iterations"):
            continue
        question = by_seq.get(message.seq - 1)
        if question is None or question.role != "user":
            continue
        history.append(Message("user", question.content))
        history.extend(_message_from_json(m) for m in message.parts.get("history", ()))
    return history


# -- executing a turn (on a worker) -------------------------------------------------


class _TurnEvents:
    """The turn's events as run events: streamed text coalesced into ``agent.text``
    events (one database write per ``TEXT_FLUSH_SECONDS``, not per token), tool
    calls with their SQL, tool results, model responses; tool results collected
    for the reply's parts."""

    def __init__(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self.emit = emit
        self.text: list[str] = []
        self.since = 0.0
        self.results: dict[str, dict[str, Any]] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type"))
        if kind == "text_delta":
            if not self.text:
                self.since = time.monotonic()
            self.text.append(str(event.get("text", "")))
            if time.monotonic() - self.since >= TEXT_FLUSH_SECONDS:
                self.flush()
            return
        self.flush()
        fields = {k: v for k, v in event.items() if k != "type"}
        if kind == "tool_call":
            sql = _sql_of(str(event.get("arguments", "")))
            if sql is not None:
                fields["sql"] = sql
        elif kind == "tool_result":
            self.results[str(event.get("id"))] = fields
        elif kind == "done":
            return  # the reply's ``agent.answer`` says it, with the answer
        self.emit({"type": RunEvent(f"agent.{kind}"), **fields})  # the vocabulary is closed

    def flush(self) -> None:
        if self.text:
            text, self.text = "".join(self.text), []
            self.emit({"type": RunEvent.AGENT_TEXT, "text": text})


def _sql_of(arguments: str) -> str | None:
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return None
    if isinstance(parsed, dict):
        sql = parsed.get("sql", parsed.get("query"))
        return sql if isinstance(sql, str) else None
    return None


_SHOWN_FACTS = (
    "content",
    "error",
    "database",
    "rows",
    "rows_shown",
    "truncated",
    "topic",
    "chart",
    "workflow",
    "agent",
    "status",
    "documents",
)
"""What a reply keeps of each tool result for the chat (docs/agents.md)."""


def _tool_parts(result: TurnResult, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each tool call of the turn with its arguments, SQL and result, in call order."""
    parts = []
    for message in result.messages:
        for call in message.tool_calls:
            part: dict[str, Any] = {"id": call.id, "name": call.name, "arguments": call.arguments}
            sql = _sql_of(call.arguments)
            if sql is not None:
                part["sql"] = sql
            found = results.get(call.id, {})
            for key in _SHOWN_FACTS:
                if key in found:
                    part[key] = found[key]
            parts.append(part)
    return parts


def execute_turn(
    run: RunRow,
    source: RevisionSource,
    *,
    connections: Connections,
    journal: DurableJournal,
    on_event: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
    limits: Limits,
    attempt: int,
) -> None:
    """The ``agent`` run kind: one turn of a thread, its SQL interruptible by the run's
    watchdog (cancel, deadline), the model call abandoned on a stop."""
    from quarry.agents.service import ask_agent
    from quarry.agents.tasks import run_async

    engine = journal.writer.engine
    with engine.connect() as conn:
        reply = tq.get_reply_of_run(conn, run.id)
        thread = tq.get_thread_by_id(conn, reply.thread_id)
        messages = tq.get_messages(conn, thread.id)
    if reply.status != PENDING:
        return  # filled by an earlier attempt that died before the run was marked done
    question = next((m for m in messages if m.seq == reply.seq - 1), None)
    if question is None:
        raise QuarryError(f"reply {reply.id} of thread {thread.id} has no question")
    events = _TurnEvents(on_event)

    def on_turn_event(event: dict[str, Any]) -> None:
        events(event)
        if event.get("type") == "model_response" and not event.get("replayed"):
            # Journaled just before: count it now, so the tenant's tokens per day see
            # this turn while it runs (a resumed turn replays it: not counted again).
            used = (int(event.get("input_tokens", 0)), int(event.get("output_tokens", 0)))
            journal.writer.write(lambda conn: tq.add_reply_tokens(conn, reply.id, *used))

    # Warm connections of an earlier turn of this revision, not the run's own: opening
    # a sandboxed DuckDB per turn would be most of a turn's CPU (quarry.agents.pool).
    with (
        Watchdog(should_stop=should_stop, deadline=limits.deadline) as watchdog,
        turn_connections().checkout(
            source, connections.cache, keep=lambda: watchdog.stop is None
        ) as warm,
    ):

        def guard(connector: Connector) -> Any:
            return watchdog.statement(connector, TURN_STEP, thread.agent)

        try:
            result: TurnResult = run_async(
                ask_agent(
                    source,
                    warm,
                    thread.agent,
                    question.content,
                    history=history_before(messages, reply),
                    on_event=on_turn_event,
                    stream=True,
                    statement_guard=guard,
                    journal=StepTurnJournal(journal, TURN_STEP),
                    should_stop=lambda: watchdog.stop is not None,
                )
            )
        except TurnStopped:
            events.flush()
            watchdog.check(TURN_STEP, thread.agent)  # raises why (cancel, deadline)
            raise
        finally:
            events.flush()
    parts = {
        "tools": _tool_parts(result, events.results),
        "history": [_message_json(m) for m in result.messages[1:]],
        "model_calls": result.model_calls,
        "tool_calls": result.tool_calls,
    }

    def fill(conn: Any) -> None:
        tq.finish_reply(
            conn,
            reply.id,
            content=result.answer,
            status=result.status,
            parts=parts,
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
        )

    journal.writer.write(fill)  # fenced by the lease, like every write of the run
    on_event(
        {
            "type": RunEvent.AGENT_ANSWER,
            "message_id": reply.id,
            "status": result.status,
            "content": result.answer,
            "model_calls": result.model_calls,
            "tool_calls": result.tool_calls,
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
        }
    )


def install() -> None:
    """Make ``agent`` runs (thread turns) execute here."""
    register_run_kind(AGENT_RUN_KIND, execute_turn)


# -- the event stream of a turn (docs/agents.md, "Server-sent events") ---------------

_RENAMED: dict[str, str] = {
    RunEvent.QUEUED: "queued",
    RunEvent.STARTED: "started",
    RunEvent.RESUMED: "started",
    RunEvent.CANCEL_REQUESTED: "cancel_requested",
    RunEvent.AGENT_TEXT: "text",
    RunEvent.AGENT_TOOL_CALL: "tool_call",
    RunEvent.AGENT_TOOL_RESULT: "tool_result",
    RunEvent.AGENT_MODEL_RESPONSE: "model_response",
    RunEvent.AGENT_WARNING: "warning",
    RunEvent.AGENT_ANSWER: "answer",
    RunEvent.FAILED: "error",
}
TERMINAL_RUN_EVENTS: frozenset[str] = frozenset(e for e in RunEvent if e.terminal)


def thread_event(event: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """A run event of a turn as the thread stream's ``(event name, data)``; None for
    the events a chat does not show (steps, checkpoints)."""
    kind = str(event.get("type", ""))
    name = _RENAMED.get(kind)
    if name is None:
        return None
    data = {k: v for k, v in event.items() if k != "type"}
    if kind == RunEvent.RESUMED:
        data["resumed"] = True
    if kind == RunEvent.FAILED:
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        data = {"message": str(message or "the turn failed"), "error": error}
    return name, data
