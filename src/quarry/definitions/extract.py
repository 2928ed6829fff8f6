"""Reference extraction: which fields of each kind name another thing.

Paths in tasks, tools and agent context are relative to the workspace root (as in
Oxy); only ``.agentic.yml`` context globs are relative to the file's own folder.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence

from pydantic import BaseModel

from quarry.definitions.models.agent import (
    AgentTool,
    DefaultAgentConfig,
    ExecuteSqlTool,
    FileContext,
    RetrievalTool,
    RoutingAgentConfig,
    SemanticModelContext,
    SemanticQueryTool,
    ValidateSqlTool,
    WorkflowTool,
)
from quarry.definitions.models.agentic import AgenticConfig
from quarry.definitions.models.app import AppConfig
from quarry.definitions.models.config import BuilderAgentModel, WorkspaceConfig
from quarry.definitions.models.monitor import MonitorConfig
from quarry.definitions.models.schedule import ScheduleConfig
from quarry.definitions.models.semantic import TopicConfig, ViewConfig
from quarry.definitions.models.tasks import (
    AgentTask,
    ConditionalTask,
    ExecuteSqlTask,
    LoopSequentialTask,
    SemanticQueryTask,
    Task,
    WorkflowTask,
)
from quarry.definitions.models.workflow import WorkflowConfig
from quarry.definitions.references import Found, RefKind, found

Loc = tuple[str | int, ...]


def extract_refs(path: str, model: BaseModel) -> Iterator[Found]:
    """Every checkable reference in a validated definition (templates and globs skipped)."""
    if isinstance(model, (WorkflowConfig, AppConfig)):
        yield from _task_refs(model.tasks, ("tasks",))
    elif isinstance(model, (DefaultAgentConfig, RoutingAgentConfig)):
        yield from _agent_refs(model)
    elif isinstance(model, AgenticConfig):
        yield from _agentic_refs(path, model)
    elif isinstance(model, ViewConfig):
        if model.datasource is not None:
            yield from found(RefKind.DATABASE, model.datasource, ("datasource",))
    elif isinstance(model, TopicConfig):
        for i, view in enumerate(model.views):
            yield from found(RefKind.VIEW, view, ("views", i))
        if model.base_view is not None:
            yield from found(RefKind.VIEW, model.base_view, ("base_view",))
    elif isinstance(model, ScheduleConfig):
        if model.target.workflow is not None:
            yield from found(RefKind.WORKFLOW, model.target.workflow, ("target", "workflow"))
        if model.target.app is not None:
            yield from found(RefKind.APP, model.target.app, ("target", "app"))
    elif isinstance(model, MonitorConfig):
        yield from found(RefKind.DATABASE, model.query.database, ("query", "database"))
    elif isinstance(model, WorkspaceConfig):
        if model.defaults is not None and model.defaults.database is not None:
            yield from found(RefKind.DATABASE, model.defaults.database, ("defaults", "database"))
        if isinstance(model.builder_agent, BuilderAgentModel):
            yield from found(RefKind.MODEL, model.builder_agent.model, ("builder_agent", "model"))


def _task_refs(tasks: Sequence[Task], base: Loc) -> Iterator[Found]:
    for i, task in enumerate(tasks):
        loc = (*base, i)
        if isinstance(task, ExecuteSqlTask):
            yield from found(RefKind.DATABASE, task.database, (*loc, "database"))
            if task.sql_file is not None:
                yield from found(RefKind.FILE, task.sql_file, (*loc, "sql_file"))
        elif isinstance(task, WorkflowTask):
            yield from found(RefKind.WORKFLOW, task.src, (*loc, "src"))
        elif isinstance(task, AgentTask):
            yield from found(RefKind.AGENT, task.agent_ref, (*loc, "agent_ref"))
        elif isinstance(task, SemanticQueryTask):
            if task.topic is not None:
                yield from found(RefKind.TOPIC, task.topic, (*loc, "topic"))
        elif isinstance(task, LoopSequentialTask):
            yield from _task_refs(task.tasks, (*loc, "tasks"))
        elif isinstance(task, ConditionalTask):
            for j, condition in enumerate(task.conditions):
                yield from _task_refs(condition.tasks, (*loc, "conditions", j, "tasks"))
            if task.else_ is not None:
                yield from _task_refs(task.else_, (*loc, "else"))


def _agent_refs(agent: DefaultAgentConfig | RoutingAgentConfig) -> Iterator[Found]:
    yield from found(RefKind.MODEL, agent.model, ("model",))
    for i, context in enumerate(agent.context or []):
        if isinstance(context, FileContext):
            for j, src in enumerate(context.src):
                yield from found(RefKind.FILE, src, ("context", i, "src", j))
        elif isinstance(context, SemanticModelContext):
            yield from found(RefKind.FILE, context.src, ("context", i, "src"))
    if isinstance(agent, RoutingAgentConfig):
        for i, route in enumerate(agent.routes):
            yield from found(RefKind.FILE, route, ("routes", i))
        if agent.route_fallback is not None:
            yield from found(RefKind.AGENT, agent.route_fallback, ("route_fallback",))
        return
    for i, tool in enumerate(agent.tools):
        loc: Loc = ("tools", i)
        if isinstance(tool, (ExecuteSqlTool, ValidateSqlTool)):
            yield from found(RefKind.DATABASE, tool.database, (*loc, "database"))
        elif isinstance(tool, WorkflowTool):
            yield from found(RefKind.WORKFLOW, tool.workflow_ref, (*loc, "workflow_ref"))
        elif isinstance(tool, AgentTool):
            yield from found(RefKind.AGENT, tool.agent_ref, (*loc, "agent_ref"))
        elif isinstance(tool, SemanticQueryTool) and tool.topic is not None:
            yield from found(RefKind.TOPIC, tool.topic, (*loc, "topic"))
        elif isinstance(tool, RetrievalTool):
            for j, src in enumerate(tool.src):
                yield from found(RefKind.FILE, src, (*loc, "src", j))


def _agentic_refs(path: str, agentic: AgenticConfig) -> Iterator[Found]:
    for i, database in enumerate(agentic.databases):
        yield from found(RefKind.DATABASE, database, ("databases", i))
    if agentic.llm is not None and agentic.llm.ref is not None:
        yield from found(RefKind.MODEL, agentic.llm.ref, ("llm", "ref"))
    folder = posixpath.dirname(path)
    for i, src in enumerate(agentic.context):
        yield from found(RefKind.FILE, src, ("context", i), base_dir=folder)
