"""``workflow``: the model runs a workflow of the revision and reads its output.

As Oxy's tool: ``workflow_ref`` names the workflow, the model's arguments are its
variables (the schema of the tool's ``variables:`` or, without one, of the
workflow's own), and the result is the output of ``output_task_ref`` — or, without
one, the output of every top-level task, named. It runs on the turn's connections
(read-only rules do not apply: a workflow is the workspace's own code, reviewed in
git, not SQL the model wrote). Inside a durable turn its result is journaled like any
tool result, so a resumed turn does not run the workflow again.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from quarry.agents.providers.base import ToolSpec
from quarry.agents.tools.base import ToolFailed, ToolOutcome
from quarry.agents.tools.readonly import SqlLimits
from quarry.agents.tools.sql import render_table
from quarry.core.errors import QuarryError
from quarry.definitions.models.agent import WorkflowTool
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.engine.journal import MemoryJournal
from quarry.runtime.engine.results import Output, TableOutput, TextOutput
from quarry.runtime.engine.runner import resolve_workflow, run_workflow
from quarry.runtime.engine.views import to_view


def _parameters(schemas: dict[str, Any] | None) -> dict[str, Any]:
    properties = {name: dict(schema) for name, schema in (schemas or {}).items()}
    return {"type": "object", "properties": properties}


class RunWorkflow:
    def __init__(self, config: WorkflowTool, connections: Connections, limits: SqlLimits) -> None:
        self.config = config
        self.connections = connections
        self.limits = limits
        schemas = config.variables.variables if config.variables else None
        if schemas is None:
            try:
                _name, workflow = resolve_workflow(connections.source, config.workflow_ref)
            except QuarryError:
                workflow = None  # reported when called (the compiler checks the ref)
            schemas = workflow.variables if workflow is not None else None
        self.spec = ToolSpec(config.name or "workflow", config.description, _parameters(schemas))

    async def call(self, arguments: dict[str, Any]) -> ToolOutcome:
        return await asyncio.to_thread(self._call, arguments)

    def _call(self, arguments: dict[str, Any]) -> ToolOutcome:
        ref = self.config.workflow_ref
        try:
            result = run_workflow(
                self.connections.source,
                ref,
                arguments,
                connections=self.connections,
                journal=MemoryJournal(),
            )
        except QuarryError as exc:
            raise ToolFailed(f"the workflow {ref!r} failed: {exc.message}") from None
        wanted = self.config.output_task_ref
        if wanted is not None:
            if wanted not in result.outputs:
                raise ToolFailed(f"the workflow {ref!r} has no output task {wanted!r}")
            text, detail = self._render(result.outputs[wanted])
        else:
            parts = []
            detail = {}
            for name, output in result.outputs.items():
                rendered, _ = self._render(output)
                parts.append(f"## {name}\n{rendered}")
            text = "\n\n".join(parts) or "The workflow has no output."
        return ToolOutcome(text, {"workflow": result.workflow, **detail})

    def _render(self, output: Output) -> tuple[str, dict[str, Any]]:
        if isinstance(output, TableOutput):
            return render_table(output.table, self.limits)
        if isinstance(output, TextOutput):
            return output.text[: self.limits.chars_shown], {}
        text = json.dumps(to_view(output), default=str)
        return text[: self.limits.chars_shown], {}
