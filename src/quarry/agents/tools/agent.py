"""``agent``: the model asks another agent of the revision (Oxy's ``agent_ref``,
arguments ``prompt`` and ``variables``) and reads its answer.

The other agent runs one turn on the same connections, its SQL under the same guard;
calls nest at most :data:`MAX_DEPTH` deep (an agent that calls itself, directly or
not, is stopped there with an error the model reads). Inside a durable turn the
answer is journaled like any tool result, so a resumed turn does not ask again.
"""

from __future__ import annotations

import contextvars
from typing import Any

from quarry.agents.providers.base import ToolSpec
from quarry.agents.tools.base import ToolFailed, ToolOutcome
from quarry.agents.tools.readonly import SqlLimits
from quarry.agents.tools.sql import StatementGuard
from quarry.core.errors import QuarryError
from quarry.definitions.models.agent import AgentTool as AgentToolConfig
from quarry.runtime.connectors.registry import Connections

MAX_DEPTH = 3
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("quarry_agent_depth", default=0)

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "description": "Chat with your prompt"},
        "variables": {"type": "object", "description": "Values of the agent's variables"},
    },
    "required": ["prompt"],
}


class AskAgent:
    def __init__(
        self,
        config: AgentToolConfig,
        connections: Connections,
        limits: SqlLimits,
        guard: StatementGuard | None = None,
    ) -> None:
        self.config = config
        self.connections = connections
        self.limits = limits
        self.guard = guard
        self.spec = ToolSpec(config.name or "agent", config.description, PARAMETERS)

    async def call(self, arguments: dict[str, Any]) -> ToolOutcome:
        from quarry.agents.service import ask_agent  # the service builds this tool

        prompt = arguments.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ToolFailed("the arguments must hold 'prompt': the question as a string")
        variables = arguments.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise ToolFailed("'variables' must be an object")
        depth = _depth.get()
        if depth >= MAX_DEPTH:
            raise ToolFailed(
                f"agents call agents at most {MAX_DEPTH} deep; answer with what you have"
            )
        token = _depth.set(depth + 1)
        ref = self.config.agent_ref
        try:
            result = await ask_agent(
                self.connections.source,
                self.connections,
                ref,
                prompt,
                variables=variables,
                stream=False,
                sql_limits=self.limits,
                statement_guard=self.guard,
            )
        except QuarryError as exc:
            raise ToolFailed(f"the agent {ref!r} failed: {exc.message}") from None
        finally:
            _depth.reset(token)
        return ToolOutcome(
            result.answer,
            {
                "agent": ref,
                "status": result.status,
                "model_calls": result.model_calls,
                "tool_calls": result.tool_calls,
                "input_tokens": result.usage.input_tokens,
                "output_tokens": result.usage.output_tokens,
            },
        )
