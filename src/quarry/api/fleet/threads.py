"""Agent threads: create, list, read, post a message, follow a turn (server-sent
events), cancel, retry (docs/agents.md, "Threads").

FleetOk: everything here reads and writes the database only; a turn is a run on the
queue, executed by a worker, and its events are rows any replica streams. A thread
belongs to the tenant of its workspace and to the user who created it: another
user of the tenant gets a 404 (an admin sees every thread of the tenant).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from quarry.agents.threads import (
    MAX_MESSAGE_CHARS,
    TERMINAL_RUN_EVENTS,
    Ceilings,
    Turn,
    cancel_turn,
    create_thread,
    post_message,
    reply_status,
    retry_turn,
    thread_event,
)
from quarry.api.deps import AccessRole, Principal, principal, services
from quarry.api.fleet.cursors import decode_cursor, encode_cursor
from quarry.core.errors import NotFound
from quarry.core.logs import REQUEST_ID
from quarry.runtime.runs.follow import RunEventHub
from quarry.runtime.services import Services
from quarry.store import runs as runq
from quarry.store import threads as tq
from quarry.store.threads import MessageRow, ThreadRow
from quarry.store.workspaces import WorkspaceRow

router = APIRouter(prefix="/api/v1/workspaces", tags=["agents"])


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=200)
    message: str | None = Field(
        None, max_length=MAX_MESSAGE_CHARS, description="A first question, asked at once."
    )


class MessagePost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


def _ceilings(svc: Services) -> Ceilings:
    return Ceilings(
        concurrent_turns=svc.settings.agent_max_concurrent_turns,
        tokens_per_day=svc.settings.agent_max_tokens_per_day,
    )


def _thread_json(thread: ThreadRow) -> dict[str, Any]:
    return {
        "id": thread.id,
        "agent": thread.agent,
        "title": thread.title,
        "created_at": thread.created_at.isoformat(),
        "updated_at": thread.updated_at.isoformat(),
    }


def _message_json(message: MessageRow) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "created_at": message.created_at.isoformat(),
    }
    if message.role == "assistant":
        status = reply_status(message)
        body.update(
            status=status,
            run_id=message.run_id,
            tools=message.parts.get("tools", []),
            input_tokens=message.input_tokens,
            output_tokens=message.output_tokens,
            finished_at=message.finished_at.isoformat() if message.finished_at else None,
        )
        if status in ("failed", "cancelled"):
            body["error"] = message.run_error
    return body


def _turn_json(workspace: str, turn: Turn) -> dict[str, Any]:
    thread = turn.thread
    return {
        "thread": _thread_json(thread),
        "message": _message_json(turn.question),
        "reply": _message_json(turn.reply),
        "events_url": (
            f"/api/v1/workspaces/{workspace}/threads/{thread.id}/events?message={turn.reply.id}"
        ),
    }


def _load(
    svc: Services, who: Principal, workspace: str, thread_id: str
) -> tuple[WorkspaceRow, ThreadRow]:
    """The workspace and the thread, if the caller may see it (else NotFound)."""
    ws = svc.catalog.workspace(who.tenant_id, workspace)
    with svc.engine.connect() as conn:
        thread = tq.get_thread(conn, who.tenant_id, ws.id, thread_id)
    if thread.owner != who.subject and who.role < AccessRole.ADMIN:
        raise NotFound(f"thread {thread_id!r} not found", thread=thread_id)
    return ws, thread


@router.post("/{workspace}/agents/{agent:path}/threads", status_code=201)
async def create(
    request: Request, workspace: str, agent: str, body: ThreadCreate
) -> dict[str, Any]:
    """A new thread with the agent (``agents/analyst`` or its file path); with
    ``message``, its first turn is queued at once."""
    svc = services(request)
    who = principal(request)

    def make() -> dict[str, Any]:
        ws = svc.catalog.workspace(who.tenant_id, workspace)
        thread = create_thread(svc.engine, svc.catalog, ws, agent, who.subject, body.title)
        if body.message is None:
            return {"thread": _thread_json(thread), "messages": []}
        turn = _post(svc, ws, thread, body.message)
        return _turn_json(workspace, turn)

    return await run_in_threadpool(make)


def _post(svc: Services, ws: WorkspaceRow, thread: ThreadRow, content: str) -> Turn:
    return post_message(
        svc.engine,
        svc.queue,
        svc.catalog,
        ws,
        thread,
        content,
        ceilings=_ceilings(svc),
        request_id=REQUEST_ID.get(),
    )


@router.get("/{workspace}/threads")
async def list_threads(
    request: Request,
    workspace: str,
    agent: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The caller's threads (an admin's: everyone's), last active first."""
    svc = services(request)
    who = principal(request)
    before = decode_cursor(cursor) if cursor else None

    def page() -> list[ThreadRow]:
        from quarry.agents.service import agent_name

        ws = svc.catalog.workspace(who.tenant_id, workspace)
        owner = None if who.role >= AccessRole.ADMIN else who.subject
        with svc.engine.connect() as conn:
            return tq.list_threads(
                conn,
                who.tenant_id,
                ws.id,
                owner=owner,
                agent=agent_name(agent) if agent else None,
                limit=limit,
                before=before,
            )

    rows = await run_in_threadpool(page)
    return {
        "threads": [_thread_json(t) for t in rows],
        "next_cursor": encode_cursor(rows[-1].updated_at, rows[-1].id)
        if len(rows) == limit
        else None,
    }


@router.get("/{workspace}/threads/{thread_id}")
async def get_thread(request: Request, workspace: str, thread_id: str) -> dict[str, Any]:
    """The thread and its messages, each reply with its status and tool calls."""
    svc = services(request)
    who = principal(request)

    def load() -> dict[str, Any]:
        _ws, thread = _load(svc, who, workspace, thread_id)
        with svc.engine.connect() as conn:
            messages = tq.get_messages(conn, thread.id)
        return {"thread": _thread_json(thread), "messages": [_message_json(m) for m in messages]}

    return await run_in_threadpool(load)


@router.post("/{workspace}/threads/{thread_id}/messages", status_code=202)
async def post(
    request: Request, workspace: str, thread_id: str, body: MessagePost
) -> dict[str, Any]:
    """Ask the next question; the answer is followed at ``events_url``. A thread has
    one turn at a time (409 while one is in progress); ceilings answer 429."""
    svc = services(request)
    who = principal(request)

    def ask() -> dict[str, Any]:
        ws, thread = _load(svc, who, workspace, thread_id)
        return _turn_json(workspace, _post(svc, ws, thread, body.content))

    return await run_in_threadpool(ask)


@router.post("/{workspace}/threads/{thread_id}/cancel")
async def cancel(request: Request, workspace: str, thread_id: str) -> dict[str, Any]:
    """Cancel the turn in progress: a queued one at once, a running one at its next
    model response or statement (its run records ``cancelled``)."""
    svc = services(request)
    who = principal(request)

    def stop() -> dict[str, Any]:
        _ws, thread = _load(svc, who, workspace, thread_id)
        reply = cancel_turn(svc.engine, svc.queue, thread)
        return {"cancelled": reply is not None, "reply": _message_json(reply) if reply else None}

    return await run_in_threadpool(stop)


@router.post("/{workspace}/threads/{thread_id}/retry", status_code=202)
async def retry(request: Request, workspace: str, thread_id: str) -> dict[str, Any]:
    """Ask the last question again after its turn failed, was cancelled or reached
    ``max_iterations`` (409 otherwise)."""
    svc = services(request)
    who = principal(request)

    def again() -> dict[str, Any]:
        ws, thread = _load(svc, who, workspace, thread_id)
        turn = retry_turn(
            svc.engine,
            svc.queue,
            svc.catalog,
            ws,
            thread,
            ceilings=_ceilings(svc),
            request_id=REQUEST_ID.get(),
        )
        return _turn_json(workspace, turn)

    return await run_in_threadpool(again)


@router.get("/{workspace}/threads/{thread_id}/events")
async def follow(
    request: Request,
    workspace: str,
    thread_id: str,
    message: Annotated[
        str | None, Query(description="The reply to follow (default: the last one).")
    ] = None,
    last_event_id: Annotated[int, Header(ge=0)] = 0,
) -> StreamingResponse:
    """Server-sent events of one turn until it ends (``done``); resumes after
    ``Last-Event-ID``. Event names and data: docs/agents.md."""
    svc = services(request)
    who = principal(request)

    def find() -> MessageRow:
        _ws, thread = _load(svc, who, workspace, thread_id)
        with svc.engine.connect() as conn:
            replies = [m for m in tq.get_messages(conn, thread.id) if m.role == "assistant"]
        if message is not None:
            replies = [m for m in replies if m.id == message]
        if not replies or replies[-1].run_id is None:
            raise NotFound(
                f"thread {thread_id!r} has no reply {message or ''}".rstrip(),
                thread=thread_id,
            )
        return replies[-1]

    reply = await run_in_threadpool(find)
    run_id = str(reply.run_id)

    def poll(after: int) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
        with svc.engine.connect() as conn:
            run = runq.get_run(conn, who.tenant_id, run_id)
            return runq.events_after(conn, run_id, after), run.finished

    def final_status() -> str:
        with svc.engine.connect() as conn:
            return reply_status(tq.get_reply_of_run(conn, run_id))

    hub: RunEventHub = request.app.state.run_events

    async def stream() -> AsyncIterator[bytes]:
        after = last_event_id
        async with hub.subscribe(run_id) as woken:
            while True:
                woken.clear()  # before reading: a push during the read wakes us again
                events, finished = await run_in_threadpool(poll, after)
                ended = False
                for event_id, event in events:
                    after = event_id
                    shown = thread_event(event)
                    if shown is not None:
                        name, data = shown
                        yield _sse(event_id, name, data)
                    ended = ended or event.get("type") in TERMINAL_RUN_EVENTS
                if ended or (finished and not events):
                    status = await run_in_threadpool(final_status)
                    yield _sse(after, "done", {"message_id": reply.id, "status": status})
                    return
                if not events:
                    if await request.is_disconnected():
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), hub.wait_seconds())

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(event_id: int, name: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data, default=str)}\n\n".encode()
