"""Asking an agent of a revision a question: the composition of provider, tools,
instructions and loop, used by the CLI (``quarry ask``) and ``agent`` tasks."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any

from quarry.agents.embeddings import EmbeddingFailed
from quarry.agents.loop import (
    EventSink,
    StopCheck,
    TurnJournal,
    TurnLimits,
    TurnResult,
    run_turn,
)
from quarry.agents.prompt import system_prompt
from quarry.agents.providers.base import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Message,
    ModelNotConfigured,
    ProviderError,
    ToolCall,
)
from quarry.agents.providers.configured import make_provider
from quarry.agents.routing import (
    DEFAULT_INSTRUCTIONS,
    fallback_tool,
    narrow_routes,
    routing_toolbox,
)
from quarry.agents.tools.base import AgentTool, ToolFailed
from quarry.agents.tools.readonly import SqlLimits
from quarry.agents.tools.sql import StatementGuard
from quarry.agents.tools.toolbox import build_toolbox
from quarry.core.errors import NotFound, QuarryError
from quarry.definitions.kinds import Kind, classify_path, definition_name
from quarry.definitions.models.agent import DefaultAgentConfig, RoutingAgentConfig
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


def load_agent(source: RevisionSource, ref: str) -> DefaultAgentConfig | RoutingAgentConfig:
    name = agent_name(ref)
    try:
        agent = source.definition(Kind.AGENT, name)
    except NotFound:
        raise NotFound(f"no agent {ref!r} in revision {source.revision_id}", agent=ref) from None
    if not isinstance(agent, (DefaultAgentConfig, RoutingAgentConfig)):
        raise AgentNotRunnable(f"{ref!r} is not an agent Quarry runs", agent=ref)
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
    fallback: AgentTool | None = None
    if isinstance(agent, RoutingAgentConfig):
        toolbox = routing_toolbox(source, agent, connections, sql_limits, statement_guard)
        fallback = fallback_tool(source, agent, connections, sql_limits, statement_guard)
        system = agent.system_instructions or DEFAULT_INSTRUCTIONS
        limits = TurnLimits(max_iterations=agent.max_iterations)
        synthesize = agent.synthesize_results
    else:
        toolbox = build_toolbox(agent, connections, sql_limits, statement_guard)
        system = system_prompt(source, agent, toolbox, variables, agent_ref=ref)
        limits = TurnLimits(agent.max_iterations, agent.max_tool_calls, agent.max_tool_concurrency)
        synthesize = True
    sink: EventSink = on_event or (lambda _event: None)
    if toolbox.not_offered:
        sink(
            {
                "type": "warning",
                "message": "tools not supported yet, not offered to the "
                "model: " + ", ".join(toolbox.not_offered),
            }
        )
    if toolbox.routes_left_out:
        sink(
            {
                "type": "warning",
                "message": "routes left out, offered to no model: "
                + "; ".join(toolbox.routes_left_out),
            }
        )
    if isinstance(agent, RoutingAgentConfig):
        routes = len(toolbox.tools)
        try:
            await narrow_routes(source, agent, toolbox, prompt, connections.secrets, journal)
        except (EmbeddingFailed, ModelNotConfigured) as exc:
            message = connections.secrets.redact(exc.message)
            sink(
                {
                    "type": "warning",
                    "message": f"the routes could not be narrowed by embedding similarity "
                    f"({message}): all {routes} routes are offered",
                }
            )
    provider = make_provider(
        source.config,
        agent.model,
        connections.secrets,
        timeout=model_timeout,
        max_retries=model_retries,
        reasoning_effort=agent.reasoning.effort if agent.reasoning else None,
    )
    try:
        try:
            result = await run_turn(
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
                synthesize=synthesize,
            )
        except ProviderError as exc:
            # A provider may quote the key it was sent (401: "Incorrect API key: sk-...").
            raise ProviderError(connections.secrets.redact(exc.message), **exc.details) from None
    finally:
        await provider.close()
    if fallback is not None and result.tool_calls == 0:
        return await _fall_back(fallback, prompt, result, sink, journal)
    return result


FALLBACK_KEY = "fallback"
"""The turn journal's key of the ``route_fallback`` answer (``<step>.agent.fallback``)."""


async def _fall_back(
    fallback: AgentTool,
    prompt: str,
    routed: TurnResult,
    sink: EventSink,
    journal: TurnJournal | None = None,
) -> TurnResult:
    """A routing agent's model called no route: ``route_fallback`` answers instead.

    Its answer is journaled like a tool result: a turn resumed after its worker died
    once the fallback had answered replays that answer, so a fallback agent or
    workflow (model calls, SQL) is not run a second time."""
    name = fallback.spec.name
    arguments = json.dumps({"prompt": prompt})
    entry = None if journal is None else await asyncio.to_thread(journal.get, FALLBACK_KEY)
    if entry is not None:
        call_id, content = str(entry["id"]), str(entry["content"])
        sink(
            {
                "type": "tool_result",
                "id": call_id,
                "name": name,
                "content": content,
                "replayed": True,
            }
        )
    else:
        call_id = f"fallback_{uuid.uuid4().hex[:12]}"
        sink({"type": "tool_call", "id": call_id, "name": name, "arguments": arguments})
        try:
            outcome = await fallback.call({"prompt": prompt})
        except ToolFailed as exc:
            sink({"type": "tool_result", "id": call_id, "name": name, "error": str(exc)})
            raise AgentNotRunnable(f"route_fallback {name!r} failed: {exc}") from None
        content = outcome.content
        if journal is not None:
            await asyncio.to_thread(journal.put, FALLBACK_KEY, {"id": call_id, "content": content})
        sink({"type": "tool_result", "id": call_id, "name": name, "content": content})
    call = ToolCall(call_id, name, arguments)
    messages = [
        *routed.messages[:1],
        Message("assistant", "", (call,)),
        Message("tool", content, tool_call_id=call_id),
        Message("assistant", content),
    ]
    return TurnResult("answered", content, messages, routed.model_calls, 1, routed.usage)
