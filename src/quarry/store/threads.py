"""Agent threads and their messages (docs/agents.md, "Threads").

A thread is a conversation of one user with one agent of one workspace. Each turn
is two message rows written with the turn's run in one transaction: the user's
question and the assistant's reply, linked to the run (``target_kind = 'agent'``)
that produces it. The reply row is filled once, when the turn ends with an answer;
until then, and when the run fails or is cancelled, its status is read from the
run, so a reply can never say "answered" for a run that did not finish.

``parts`` (JSON) holds what the chat screen shows besides the text (tool calls with
their SQL and results) and ``history``, the provider-neutral messages of the turn
that the next turn sends the model after the earlier questions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection

from quarry.core.clock import utcnow
from quarry.core.errors import NotFound
from quarry.store.run_tables import runs
from quarry.store.tables import ID, metadata
from quarry.store.types import UtcDateTime

agent_threads = Table(
    "agent_threads",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("agent", String(500), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("title", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

agent_messages = Table(
    "agent_messages",
    metadata,
    Column("id", ID, primary_key=True),
    Column("thread_id", ID, ForeignKey("agent_threads.id", ondelete="CASCADE"), nullable=False),
    Column("tenant_id", ID, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("run_id", ID, nullable=True),
    Column("parts", Text, nullable=False),
    Column("input_tokens", Integer, nullable=False, server_default="0"),
    Column("output_tokens", Integer, nullable=False, server_default="0"),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=True),
    UniqueConstraint("thread_id", "seq"),
)

Index(
    "ix_agent_threads_listing",
    agent_threads.c.tenant_id,
    agent_threads.c.workspace_id,
    agent_threads.c.owner,
    agent_threads.c.updated_at,
)
Index("ix_agent_messages_run", agent_messages.c.run_id)
Index("ix_agent_messages_usage", agent_messages.c.tenant_id, agent_messages.c.finished_at)

PENDING = "pending"
"""A reply whose run has not ended with an answer (its run says how it is doing)."""


@dataclass(frozen=True)
class ThreadRow:
    id: str
    tenant_id: str
    workspace_id: str
    agent: str
    owner: str
    title: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MessageRow:
    id: str
    thread_id: str
    tenant_id: str
    seq: int
    role: str
    content: str
    status: str
    run_id: str | None
    parts: dict[str, Any]
    input_tokens: int
    output_tokens: int
    created_at: datetime
    finished_at: datetime | None
    run_state: str | None = None
    run_error: str | None = None
    """The state and error of the reply's run (read with the message)."""


def _thread(row: Any) -> ThreadRow:
    return ThreadRow(**dict(row._mapping))


def _message(row: Any) -> MessageRow:
    values = dict(row._mapping)
    values["parts"] = json.loads(values["parts"])
    return MessageRow(**values)


def insert_thread(conn: Connection, thread: ThreadRow) -> None:
    conn.execute(insert(agent_threads).values(**thread.__dict__))


def get_thread(conn: Connection, tenant_id: str, workspace_id: str, thread_id: str) -> ThreadRow:
    """The thread, if it is of this tenant's workspace (else NotFound: the same answer
    for another tenant's thread as for none at all)."""
    row = conn.execute(
        select(agent_threads).where(
            agent_threads.c.id == thread_id,
            agent_threads.c.tenant_id == tenant_id,
            agent_threads.c.workspace_id == workspace_id,
        )
    ).first()
    if row is None:
        raise NotFound(f"thread {thread_id!r} not found", thread=thread_id)
    return _thread(row)


def get_thread_by_id(conn: Connection, thread_id: str) -> ThreadRow:
    row = conn.execute(select(agent_threads).where(agent_threads.c.id == thread_id)).first()
    if row is None:
        raise NotFound(f"thread {thread_id!r} not found", thread=thread_id)
    return _thread(row)


def list_threads(
    conn: Connection,
    tenant_id: str,
    workspace_id: str,
    *,
    owner: str | None,
    agent: str | None = None,
    limit: int = 50,
    before: tuple[datetime, str] | None = None,
) -> list[ThreadRow]:
    """Newest first (by last activity); ``owner`` None lists every owner's."""
    query = select(agent_threads).where(
        agent_threads.c.tenant_id == tenant_id, agent_threads.c.workspace_id == workspace_id
    )
    if owner is not None:
        query = query.where(agent_threads.c.owner == owner)
    if agent is not None:
        query = query.where(agent_threads.c.agent == agent)
    if before is not None:
        at, tid = before
        query = query.where(
            (agent_threads.c.updated_at < at)
            | and_(agent_threads.c.updated_at == at, agent_threads.c.id < tid)
        )
    order = (agent_threads.c.updated_at.desc(), agent_threads.c.id.desc())
    return [_thread(r) for r in conn.execute(query.order_by(*order).limit(limit))]


def touch_thread(conn: Connection, thread_id: str) -> None:
    conn.execute(
        update(agent_threads).where(agent_threads.c.id == thread_id).values(updated_at=utcnow())
    )


def set_title(conn: Connection, thread_id: str, title: str) -> None:
    conn.execute(update(agent_threads).where(agent_threads.c.id == thread_id).values(title=title))


def next_seq(conn: Connection, thread_id: str) -> int:
    found = conn.execute(
        select(func.max(agent_messages.c.seq)).where(agent_messages.c.thread_id == thread_id)
    ).scalar_one()
    return 0 if found is None else int(found) + 1


def insert_message(conn: Connection, message: MessageRow) -> None:
    values = {k: v for k, v in message.__dict__.items() if k not in ("run_state", "run_error")}
    values["parts"] = json.dumps(message.parts, default=str)
    conn.execute(insert(agent_messages).values(**values))


def _messages_query() -> Any:
    return select(
        agent_messages, runs.c.state.label("run_state"), runs.c.error.label("run_error")
    ).select_from(agent_messages.outerjoin(runs, runs.c.id == agent_messages.c.run_id))


def get_messages(conn: Connection, thread_id: str) -> list[MessageRow]:
    rows = conn.execute(
        _messages_query()
        .where(agent_messages.c.thread_id == thread_id)
        .order_by(agent_messages.c.seq)
    )
    return [_message(r) for r in rows]


def get_reply_of_run(conn: Connection, run_id: str) -> MessageRow:
    row = conn.execute(
        _messages_query().where(
            agent_messages.c.run_id == run_id, agent_messages.c.role == "assistant"
        )
    ).first()
    if row is None:
        raise NotFound(f"no thread message is answered by run {run_id}", run=run_id)
    return _message(row)


def finish_reply(
    conn: Connection,
    message_id: str,
    *,
    content: str,
    status: str,
    parts: dict[str, Any],
    input_tokens: int,
    output_tokens: int,
) -> bool:
    """Fill a pending reply; False when it was already filled (a replayed turn)."""
    done = conn.execute(
        update(agent_messages)
        .where(agent_messages.c.id == message_id, agent_messages.c.status == PENDING)
        .values(
            content=content,
            status=status,
            parts=json.dumps(parts, default=str),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finished_at=utcnow(),
        )
    )
    return bool(done.rowcount)


def turns_in_flight(conn: Connection, tenant_id: str, up_to: int) -> int:
    """Replies of the tenant whose run is queued or running, counted up to ``up_to``
    (the count stops there: the check costs the same however many there are)."""
    inner = (
        select(agent_messages.c.id)
        .select_from(agent_messages.join(runs, runs.c.id == agent_messages.c.run_id))
        .where(
            agent_messages.c.tenant_id == tenant_id,
            agent_messages.c.status == PENDING,
            runs.c.state.in_(("queued", "running")),
        )
        .limit(up_to)
        .subquery()
    )
    return int(conn.execute(select(func.count()).select_from(inner)).scalar_one())


def add_reply_tokens(
    conn: Connection, message_id: str, input_tokens: int, output_tokens: int
) -> None:
    """Count a model response of a turn in progress on its pending reply (the ceiling
    of tokens per day sees running turns); ``finish_reply`` sets the turn's totals."""
    conn.execute(
        update(agent_messages)
        .where(agent_messages.c.id == message_id, agent_messages.c.status == PENDING)
        .values(
            input_tokens=agent_messages.c.input_tokens + input_tokens,
            output_tokens=agent_messages.c.output_tokens + output_tokens,
        )
    )


def tokens_since(conn: Connection, tenant_id: str, since: datetime) -> int:
    """Input plus output tokens of the tenant's replies finished since ``since``, and
    of those still pending (running, or failed mid-way) created since then."""
    total = conn.execute(
        select(
            func.coalesce(
                func.sum(agent_messages.c.input_tokens + agent_messages.c.output_tokens), 0
            )
        ).where(
            agent_messages.c.tenant_id == tenant_id,
            or_(
                agent_messages.c.finished_at >= since,
                and_(
                    agent_messages.c.finished_at.is_(None),
                    agent_messages.c.created_at >= since,
                ),
            ),
        )
    ).scalar_one()
    return int(total)
