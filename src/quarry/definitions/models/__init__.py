"""Pydantic models of the Oxy workspace file formats, one module per kind."""

from quarry.definitions.models.agent import (
    AgentConfig,
    DefaultAgentConfig,
    RoutingAgentConfig,
)
from quarry.definitions.models.agentic import AgenticConfig
from quarry.definitions.models.app import AppConfig
from quarry.definitions.models.config import WorkspaceConfig, config_names, dataset_dirs
from quarry.definitions.models.semantic import TopicConfig, ViewConfig
from quarry.definitions.models.tasks import Task
from quarry.definitions.models.workflow import WorkflowConfig

__all__ = [
    "AgentConfig",
    "AgenticConfig",
    "AppConfig",
    "DefaultAgentConfig",
    "RoutingAgentConfig",
    "Task",
    "TopicConfig",
    "ViewConfig",
    "WorkflowConfig",
    "WorkspaceConfig",
    "config_names",
    "dataset_dirs",
]
