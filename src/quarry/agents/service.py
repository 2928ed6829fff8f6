"""Asking an agent of a revision a question: the composition of provider, tools,
instructions and loop, used by the CLI (``quarry ask``) and ``agent`` tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quarry.agents.loop import (
    EventSink,
    StopCheck,
    TurnJournal,
    TurnLimits,
    TurnResult,
    run_turn,
)
from quarry.agents.prompt import system_prompt
from quarry.agents.providers.base import DEFAULT_RETRIES, DEFAULT_TIMEOUT, Message, ProviderError
from quarry.agents.providers.configured import make_provider
from quarry.agents.tools.readonly import SqlLimits
from quarry.agents.tools.sql import StatementGuard
from quarry.agents.tools.toolbox import build_toolbox
from quarry.core.errors import NotFound, QuarryError
from quarry.definitions.kinds import Kind, classify_path, definition_name
from quarry.definitions.models.agent import DefaultAgentConfig
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.source import RevisionSource, normalise_path


class AgentNotRunnable(QuarryError):
    status_code = 422
    code = "agent_not_runnable"


def agent_name(ref: str) -> str:
    """``agents/analyst.agent.yml`` (Oxy's ``agent_ref``) or ``agents/analyst`` -> the
    definition name ``agents/analyst``."""
    path = normalise_path(ref)
    return definition_name(path, Kind.AGENT) if classify_path(path) is Kind.AGENT else path


def load_agent(source: RevisionSource, ref: str) -> DefaultAgentConfig:
    name = agent_name(ref)
    try:
        agent = source.definition(Kind.AGENT, name)
    except NotFound:
        raise NotFound(f"no agent {ref!r} in revision {source.revision_id}", agent=ref) from None
    if not isinstance(agent, DefaultAgentConfig):
        raise AgentNotRunnable(
            f"agent {ref!r} is a routing agent; routing agents are not supported yet",
            agent=ref,
        )
    return agent


async def ask_agent(
    source: RevisionSource,
    connections: Connections,
    ref: str,
    prompt: str,
    *,
    variables: dict[str, Any] | None = None,
    history: Sequence[Message] = (),
    on_event: EventSink | None = None,
    stream: bool = True,
    sql_limits: SqlLimits | None = None,
    model_timeout: float = DEFAULT_TIMEOUT,
    model_retries: int = DEFAULT_RETRIES,
    statement_guard: StatementGuard | None = None,
    journal: TurnJournal | None = None,
    should_stop: StopCheck | None = None,
) -> TurnResult:
    """One turn of agent ``ref`` of the revision, its SQL on ``connections``."""
    agent = load_agent(source, ref)
    toolbox = build_toolbox(agent, connections, sql_limits, statement_guard)
    sink: EventSink = on_event or (lambda _event: None)
    if toolbox.not_offered:
        sink(
            {
                "type": "warning",
                "message": "tools not supported yet, not offered to the "
                "model: " + ", ".join(toolbox.not_offered),
            }
        )
    system = system_prompt(source, agent, toolbox, variables, agent_ref=ref)
    provider = make_provider(
        source.config,
        agent.model,
        connections.secrets,
        timeout=model_timeout,
        max_retries=model_retries,
        reasoning_effort=agent.reasoning.effort if agent.reasoning else None,
    )
    limits = TurnLimits(agent.max_iterations, agent.max_tool_calls, agent.max_tool_concurrency)
    try:
        try:
            return await run_turn(
                provider,
                system,
                prompt,
                tools=toolbox.tools,
                history=history,
                limits=limits,
                on_event=sink,
                stream=stream,
                journal=journal,
                should_stop=should_stop,
            )
        except ProviderError as exc:
            # A provider may quote the key it was sent (401: "Incorrect API key: sk-...").
            raise ProviderError(connections.secrets.redact(exc.message), **exc.details) from None
    finally:
        await provider.close()
