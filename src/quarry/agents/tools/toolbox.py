"""The tools of one agent: those Quarry runs, built; the others named as not offered."""

from __future__ import annotations

from dataclasses import dataclass, field

from quarry.agents.tools.base import AgentTool
from quarry.agents.tools.readonly import SqlLimits
from quarry.agents.tools.sql import ExecuteSql, StatementGuard, ValidateSql
from quarry.definitions.models.agent import DefaultAgentConfig, ExecuteSqlTool, ValidateSqlTool
from quarry.runtime.connectors.registry import Connections


@dataclass
class Toolbox:
    tools: dict[str, AgentTool] = field(default_factory=dict)
    not_offered: list[str] = field(default_factory=list)
    """Tools of the agent Quarry does not run yet, as ``"name (type)"``: no model sees them."""


def build_toolbox(
    agent: DefaultAgentConfig,
    connections: Connections,
    limits: SqlLimits | None = None,
    guard: StatementGuard | None = None,
) -> Toolbox:
    limits = limits or SqlLimits()
    box = Toolbox()
    for config in agent.tools:
        tool: AgentTool
        if isinstance(config, ExecuteSqlTool):
            tool = ExecuteSql(config, connections, limits, guard)
        elif isinstance(config, ValidateSqlTool):
            tool = ValidateSql(config, connections, limits, guard)
        else:
            box.not_offered.append(f"{config.name or config.type} ({config.type})")
            continue
        box.tools[tool.spec.name] = tool
    return box
