"""``*.workflow.yml`` / ``*.procedure.yml`` / ``*.automation.yml``: one schema, three names.

Oxy renamed workflows to procedures and automations over time; existing
workspaces use all three spellings, so all three compile to the same model.
"""

from __future__ import annotations

from quarry.definitions.models.common import RetrievalConfig, Strict, VariableSchemas
from quarry.definitions.models.evals import EvalConfig
from quarry.definitions.models.tasks import Task


class WorkflowConfig(Strict):
    """Oxy reads workflows with ``deny_unknown_fields``: an unknown key is an error."""

    # Accepted as in Oxy, which documents it but addresses a workflow by its path.
    name: str | None = None
    tasks: list[Task]
    description: str = ""
    variables: VariableSchemas | None = None
    # Accepted so workspaces compile unchanged; not executed yet.
    tests: list[EvalConfig] = []
    retrieval: RetrievalConfig | None = None
    consistency_prompt: str | None = None
