"""The tools of one agent: those Quarry runs, built; the others named as not offered
(the compiler warns about them too: ``RUNNABLE_TOOL_TYPES``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from quarry.agents.tools.agent import AskAgent
from quarry.agents.tools.base import AgentTool
from quarry.agents.tools.readonly import SqlLimits
from quarry.agents.tools.retrieval import Retrieval
from quarry.agents.tools.semantic import SemanticQueryExecutor
from quarry.agents.tools.sql import ExecuteSql, StatementGuard, ValidateSql
from quarry.agents.tools.visualize import Visualize
from quarry.agents.tools.workflow import RunWorkflow
from quarry.definitions.models.agent import (
    AgentTool as AgentToolConfig,
)
from quarry.definitions.models.agent import (
    DefaultAgentConfig,
    ExecuteSqlTool,
    RetrievalTool,
    SemanticQueryTool,
    ValidateSqlTool,
    VisualizeTool,
    WorkflowTool,
)
from quarry.runtime.connectors.registry import Connections


@dataclass
class Toolbox:
    tools: dict[str, AgentTool] = field(default_factory=dict)
    not_offered: list[str] = field(default_factory=list)
    """Tools of the agent Quarry does not run yet, as ``"name (type)"``: no model sees them."""
    routes_left_out: list[str] = field(default_factory=list)
    """Routes of a routing agent that cannot be offered, as ``"path: why"`` (a ``.sql``
    file whose ``oxy:`` header names no known database, a file of no route kind)."""
    documents: dict[str, str] = field(default_factory=dict)
    """A routing agent's routes by tool name: the text their similarity to the
    question is measured on (the route's description, an SQL file's ``embed:``)."""


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
        elif isinstance(config, SemanticQueryTool):
            tool = SemanticQueryExecutor(config, connections, limits, guard)
        elif isinstance(config, VisualizeTool):
            tool = Visualize(config)
        elif isinstance(config, WorkflowTool):
            tool = RunWorkflow(config, connections, limits)
        elif isinstance(config, AgentToolConfig):
            tool = AskAgent(config, connections, limits, guard)
        elif isinstance(config, RetrievalTool):
            tool = Retrieval(config, connections, limits)
        else:
            box.not_offered.append(f"{config.name or config.type} ({config.type})")
            continue
        box.tools[tool.spec.name] = tool
    return box
