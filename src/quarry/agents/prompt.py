"""An agent's ``system_instructions`` rendered as Oxy renders them.

The names in scope, as in Oxy's default agent:

* ``context.NAME``: a ``file`` context is the list of its files' texts (``src``
  globs matched against the revision's files); a ``semantic_model`` context is the
  YAML document read as data;
* ``databases.NAME``: ``name`` and ``dialect`` of each database of ``config.yml``;
* ``tools.NAME``: ``name``, ``type`` and ``description`` of each tool offered;
* the agent's ``variables`` (defaults, overridden by the caller's values).

Rendering uses the workflow template engine (sandboxed, bounded; see
``quarry.runtime.engine.templating``), so a template error names what is wrong.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import yaml

from quarry.agents.tools.toolbox import Toolbox
from quarry.core.errors import QuarryError
from quarry.definitions.models.agent import DefaultAgentConfig, FileContext
from quarry.runtime.engine.templating import TemplateProblem, render_text
from quarry.runtime.source import RevisionSource, normalise_path


class InstructionsFailed(QuarryError):
    status_code = 422
    code = "agent_instructions_failed"


def _file_context(source: RevisionSource, context: FileContext) -> list[str]:
    patterns = [normalise_path(pattern) for pattern in context.src]
    paths = sorted(
        row.path
        for row in source.files()
        if any(fnmatch.fnmatchcase(row.path, pattern) for pattern in patterns)
    )
    return [source.file_bytes(path).decode("utf-8", errors="replace") for path in paths]


def _contexts(source: RevisionSource, agent: DefaultAgentConfig) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for context in agent.context or ():
        if isinstance(context, FileContext):
            found[context.name] = _file_context(source, context)
        else:
            text = source.file_bytes(normalise_path(context.src)).decode("utf-8", "replace")
            found[context.name] = yaml.safe_load(text)
    return found


def _variable_defaults(agent: DefaultAgentConfig) -> dict[str, Any]:
    # Each variable is a JSON Schema; its ``default`` is the value when none is given.
    return {name: schema.get("default") for name, schema in (agent.variables or {}).items()}


def template_names(
    source: RevisionSource,
    agent: DefaultAgentConfig,
    toolbox: Toolbox,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    config = source.config
    databases = {
        db.name: {"name": db.name, "dialect": getattr(db, "type", "")} for db in config.databases
    }
    types = {(t.name or t.type): t.type for t in agent.tools}
    tools = {
        name: {"name": name, "type": types.get(name, ""), "description": tool.spec.description}
        for name, tool in toolbox.tools.items()
    }
    return {
        **_variable_defaults(agent),
        **(variables or {}),
        "context": _contexts(source, agent),
        "databases": databases,
        "tools": tools,
    }


def system_prompt(
    source: RevisionSource,
    agent: DefaultAgentConfig,
    toolbox: Toolbox,
    variables: dict[str, Any] | None = None,
    *,
    agent_ref: str = "",
) -> str:
    names = template_names(source, agent, toolbox, variables)
    try:
        return render_text(agent.system_instructions, names)
    except TemplateProblem as exc:
        raise InstructionsFailed(
            f"agent {agent_ref!r}: system_instructions: {exc}", agent=agent_ref
        ) from None
