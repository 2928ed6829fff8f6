"""Task ``cache: {enabled, path}``: a step's result kept and read back, as in Oxy.

Oxy renders ``path`` (a template), resolves it in the project and, when a cache file
is there, reads the task's output from it instead of executing the task; otherwise
it executes the task and writes the output there. Nothing expires it.

Quarry keeps the same rule with two differences that keep a workspace safe and a
revision reproducible:

* the result is stored in the object store, never on the working copy, at
  ``t/<tenant>/task-cache/<workspace>/<revision>/<sha256 of the path>``: a new
  revision starts with an empty cache (its SQL may have changed), and runs of one
  revision share it (on every node of a fleet);
* the rendered path must stay inside the workspace (no ``..``, no absolute path);
  a path that does not render or leaves the workspace means "no cache" for that
  step, with a ``step_warning`` event, and the step simply executes.

Templated paths give one entry per value, e.g. ``cache/{{ controls.region }}.json``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from quarry.core.errors import NotFound
from quarry.definitions.models.tasks import Task
from quarry.runtime.engine.context import RunContext, Scope
from quarry.runtime.engine.results import StepResult
from quarry.runtime.engine.templating import TemplateProblem, render_text
from quarry.runtime.source import normalise_path
from quarry.store.objects.base import tenant_prefix


def cache_key(ctx: RunContext, path: str) -> str:
    """The object key of the cached result at workspace ``path`` in this revision."""
    source = ctx.source
    digest = hashlib.sha256(path.encode()).hexdigest()
    return (
        f"{tenant_prefix(source.tenant_id)}/task-cache/{source.workspace.id}/"
        f"{source.revision_id}/{digest}"
    )


def cache_path(ctx: RunContext, task: Task, scope: Scope, key: str) -> str | None:
    """The task's rendered, checked cache path; None when it has no enabled cache."""
    config = task.cache
    if config is None or not config.enabled:
        return None
    try:
        return normalise_path(render_text(config.path, scope.template_context()).strip())
    except (TemplateProblem, ValueError) as exc:
        ctx.emit(
            "step_warning",
            key,
            task=task.name,
            warning="cache_disabled",
            message=f"cache path {config.path!r} not used: {exc}",
        )
        return None


def read(ctx: RunContext, path: str) -> StepResult | None:
    try:
        data = ctx.source.store.get(cache_key(ctx, path))
    except NotFound:
        return None
    result = StepResult.from_bytes(data)
    meta: dict[str, Any] = {**result.meta, "cache": {"path": path, "hit": True}}
    return StepResult(result.output, meta)


def write(ctx: RunContext, path: str, result: StepResult) -> StepResult:
    meta: dict[str, Any] = {**result.meta, "cache": {"path": path, "hit": False}}
    stored = StepResult(result.output, meta)
    ctx.source.store.put(cache_key(ctx, path), stored.to_bytes())
    return stored
