"""Changing a control re-runs only what depends on it.

An app run computes every task for one set of control values. When the person changes
one control, the tasks that do not read it would compute the same tables again. So
each task of an app run gets an implicit task cache (``quarry.runtime.engine.task_cache``)
keyed by the values of the controls it depends on: the run for ``region=South``
reads ``revenue_by_region`` (which never mentions a control) from the run for
``region=North`` and executes only the tasks that read ``controls.region``.

What a task depends on: the controls its fields and its ``sql_file`` name
(``controls.region``, ``controls['region']``), and, transitively, those of every
earlier task it mentions by name (``{{ kpis }}``). A task that uses ``controls``
any other way depends on every control. Task types whose inputs are not all in
their own fields (agents, sub-workflows, loops, conditionals...) always run, as do a
task that reads the clock (``now()``) and a task with its own ``cache:`` (the
author's rule wins).

A **refresh** — a run for control values whose result is already stored — is the
person asking for new data: its tasks' entries are dropped first, so every task
executes and the next control change reuses the fresh tables. Entries live with the
revision (a new revision starts empty), like every task cache.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

from quarry.core.hashing import canonical_json, sha256_hex
from quarry.definitions.models.app import AppConfig
from quarry.definitions.models.common import TaskCache
from quarry.definitions.models.tasks import Task
from quarry.runtime.apps.controls import app_controls
from quarry.runtime.apps.keys import app_result_key
from quarry.runtime.engine import task_cache
from quarry.runtime.engine.context import RunContext
from quarry.runtime.source import RevisionSource, normalise_path

REUSABLE_TYPES = frozenset({"execute_sql", "semantic_query", "formatter"})
CACHE_FOLDER = ".quarry/app-reuse"
_NAMED = re.compile(r"\bcontrols\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([^'\"]+)['\"]\s*\])")
_ANY = re.compile(r"\bcontrols\b")
_CLOCK = re.compile(r"\bnow\s*\(")  # a task that reads the clock is computed afresh


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k != "cache":
                yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _texts(task: Task, source: RevisionSource | None) -> list[str] | None:
    """Every text of the task a template can be in; None when one cannot be read."""
    body = task.model_dump(mode="json", by_alias=True, exclude_none=True)
    texts = list(_strings(body))
    sql_file = body.get("sql_file")
    if isinstance(sql_file, str):
        if source is None:
            return None
        try:
            texts.append(source.file_bytes(normalise_path(sql_file)).decode("utf-8", "replace"))
        except Exception:  # the run fails on it itself; here it only means "always run"
            return None
    return texts


def task_dependencies(
    app: AppConfig, source: RevisionSource | None = None
) -> dict[str, frozenset[str] | None]:
    """Each top-level task's controls (transitively through the tasks it mentions);
    None for a task that always runs."""
    every = frozenset(c.name for c in app_controls(app))
    found: dict[str, frozenset[str] | None] = {}
    for task in app.tasks:
        texts = _texts(task, source) if task.type in REUSABLE_TYPES else None
        if texts is None or task.cache is not None or any(_CLOCK.search(t) for t in texts):
            found[task.name] = None
            continue
        own: set[str] = set()
        for text in texts:
            named = _NAMED.findall(text)
            own.update(a or b for a, b in named)
            if len(_ANY.findall(text)) > len(named):  # ``controls`` used whole
                own.update(every)
        mentioned = [
            name
            for name in found
            if any(re.search(rf"(?<![\w.]){re.escape(name)}\b", t) for t in texts)
        ]
        always = False
        for name in mentioned:
            upstream = found[name]
            if upstream is None:
                always = True
            else:
                own.update(upstream)
        found[task.name] = None if always else frozenset(own)
    return found


def _path(app_name: str, task: str, values: dict[str, Any]) -> str:
    digest = sha256_hex(canonical_json([app_name, task, values]))
    return f"{CACHE_FOLDER}/{digest}"


def reusable_tasks(
    app: AppConfig, source: RevisionSource, app_name: str, controls: dict[str, Any]
) -> list[Task]:
    """The app's tasks, each that may be reused given an implicit cache keyed by the
    values of the controls it depends on (module docstring)."""
    deps = task_dependencies(app, source)
    refresh = source.store.exists(
        app_result_key(
            source.tenant_id, source.workspace.id, source.revision_id, app_name, controls
        )
    )
    shim = cast(RunContext, SimpleNamespace(source=source))  # cache_key reads .source only
    tasks: list[Task] = []
    for task in app.tasks:
        needs = deps.get(task.name)
        if needs is None:
            tasks.append(task)
            continue
        path = _path(app_name, task.name, {k: controls.get(k) for k in sorted(needs)})
        if refresh:
            source.store.delete(task_cache.cache_key(shim, path))
        cache = TaskCache(path=path, enabled=True)
        tasks.append(task.model_copy(update={"cache": cache}))
    return tasks
