"""From file bytes to a validated definition, or to every problem in the file.

The compiler parses each file once, stores ``body`` and ``refs`` as JSON, and the
runtime rebuilds typed models from ``body`` with :func:`load_model`, so the two
sides never disagree about what a definition means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from quarry.core.errors import CompileFailed, Problem
from quarry.definitions.checks import unique_name_problems
from quarry.definitions.errors import validation_problems
from quarry.definitions.extract import extract_refs
from quarry.definitions.kinds import Kind, classify_path, definition_name
from quarry.definitions.leniency import model_warnings
from quarry.definitions.models.agent import AgentConfig
from quarry.definitions.models.agentic import AgenticConfig
from quarry.definitions.models.app import AppConfig
from quarry.definitions.models.common import collecting_notes
from quarry.definitions.models.config import WorkspaceConfig, config_names, dataset_dirs
from quarry.definitions.models.monitor import MonitorConfig
from quarry.definitions.models.schedule import ScheduleConfig
from quarry.definitions.models.semantic import (
    MotifConfig,
    SavedQueryConfig,
    TopicConfig,
    ViewConfig,
)
from quarry.definitions.models.workflow import WorkflowConfig
from quarry.definitions.references import Ref
from quarry.definitions.task_positions import TaskPositions, task_positions
from quarry.definitions.yaml_nodes import (
    DEFAULT_LIMITS,
    YamlLimits,
    load_document,
    locate,
    position,
)

__all__ = [
    "ParsedDefinition",
    "YamlLimits",
    "config_names",
    "dataset_dirs",
    "load_model",
    "parse_definition",
]

# Agents are a union (default or routing), hence adapters rather than classes.
_ADAPTERS: dict[Kind, TypeAdapter[Any]] = {
    Kind.CONFIG: TypeAdapter(WorkspaceConfig),
    Kind.WORKFLOW: TypeAdapter(WorkflowConfig),
    Kind.APP: TypeAdapter(AppConfig),
    Kind.AGENT: TypeAdapter(AgentConfig),
    Kind.AGENTIC: TypeAdapter(AgenticConfig),
    Kind.VIEW: TypeAdapter(ViewConfig),
    Kind.TOPIC: TypeAdapter(TopicConfig),
    Kind.SCHEDULE: TypeAdapter(ScheduleConfig),
    Kind.MONITOR: TypeAdapter(MonitorConfig),
    Kind.MOTIF: TypeAdapter(MotifConfig),
    Kind.QUERY: TypeAdapter(SavedQueryConfig),
}


@dataclass(frozen=True)
class ParsedDefinition:
    """A definition that validated.

    ``body`` is the model dumped as JSON (aliases, no nulls): deterministic, so equal
    files hash equal, and loadable again with :func:`load_model`.
    """

    kind: Kind
    name: str
    path: str
    model: BaseModel
    body: dict[str, Any]
    refs: tuple[Ref, ...]
    # What the file holds that is ignored, as Oxy ignores it (severity "warning").
    warnings: tuple[Problem, ...] = ()
    # Where each task of a workflow or app starts, by step key (empty for the other
    # kinds): what a failed step's ``file:line`` names (quarry.definitions.task_positions).
    tasks: TaskPositions = field(default_factory=dict)


def parse_definition(
    path: str, data: bytes, limits: YamlLimits = DEFAULT_LIMITS
) -> ParsedDefinition:
    """Parse and validate one workspace file (``path`` is workspace-relative posix).

    Raises CompileFailed listing every problem found in the file, sorted, so an
    author fixes them in one round instead of one per compile. ``limits`` bound the
    YAML's nesting and alias expansion (hostile input; see :class:`YamlLimits`).
    """
    kind = classify_path(path)
    if kind is None:
        raise ValueError(f"{path!r} is not a definition file")
    document = load_document(path, data, limits)
    problems: list[Problem] = list(document.problems)
    model: BaseModel | None = None
    with collecting_notes() as notes:
        try:
            model = _ADAPTERS[kind].validate_python(document.value)
        except ValidationError as exc:
            problems += validation_problems(path, document.root, exc.errors())
    warnings: list[Problem] = []
    if model is not None:
        problems += unique_name_problems(path, document.root, model)
        warnings = model_warnings(path, document.root, model, notes)
    if problems or model is None:
        raise CompileFailed(problems=sorted(set(problems + warnings)))

    refs = []
    for ref_kind, target, loc in extract_refs(path, model):
        line, column = position(locate(document.root, loc).node)
        field = ".".join(str(part) for part in loc)
        refs.append(Ref(kind=ref_kind, target=target, line=line, column=column, field=field))
    refs.sort(key=lambda ref: (ref.line, ref.column, ref.field))

    if isinstance(model, (ViewConfig, TopicConfig, MotifConfig, SavedQueryConfig)):
        name = model.name
    else:
        name = definition_name(path, kind)
    return ParsedDefinition(
        kind=kind,
        name=name,
        path=path,
        model=model,
        body=_body(model),
        refs=tuple(refs),
        warnings=tuple(warnings),
        tasks=task_positions(document.root, model),
    )


def load_model(kind: Kind, body: dict[str, Any]) -> BaseModel:
    """Rebuild the typed model of a stored ``body``.

    A failure here (pydantic's ValidationError) means the stored body and this
    release's models disagree: a bug or a missed migration, not an author's error.
    """
    model = _ADAPTERS[kind].validate_python(body)
    assert isinstance(model, BaseModel)
    return model


def _body(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
