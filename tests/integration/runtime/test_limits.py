"""The engine's watchdog on a real DuckDB: a composite step's timeout, a stop in
the middle of a statement, and the ``step`` names of templates."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from quarry.runtime.connectors import Connections
from quarry.runtime.engine import MemoryJournal, RunCancelled, RunResult, run_workflow
from quarry.runtime.engine.errors import StepTimedOut
from quarry.runtime.engine.runner import Limits
from tests.integration.runtime.conftest import Runner

# The watchdog is the engine's; the backend only stores what it ran.
pytestmark = pytest.mark.backend_agnostic

SPIN = "SELECT sum(a.range * b.range) AS s FROM range(100000) a, range(100000) b"
LOOP = f"""\
tasks:
  - name: regions
    type: loop_sequential
    values: [1, 2, 3]
    concurrency: 2
    timeout: 1
    tasks:
      - name: spin
        type: execute_sql
        database: local
        sql_query: {SPIN}
"""
SINGLE = f"""\
tasks:
  - name: spin
    type: execute_sql
    database: local
    sql_query: {SPIN}
"""
KEYS = """\
tasks:
  - name: each
    type: loop_sequential
    values: [a, b]
    tasks:
      - name: key
        type: formatter
        template: "{{ step.idempotency_key }} {{ step.attempt }}"
  - name: named
    type: formatter
    template: "{{ step.key }}"
  - name: step
    type: formatter
    template: "a task named step"
  - name: shadowed
    type: formatter
    template: "{{ step }}"
"""


def _run(runner: Runner, workflow: str, **kwargs: Any) -> RunResult:
    connections = Connections(runner.source, runner.cache)
    try:
        return run_workflow(
            runner.source,
            workflow,
            connections=connections,
            journal=kwargs.pop("journal", MemoryJournal()),
            on_event=runner.events.append,
            **kwargs,
        )
    finally:
        connections.close()


@pytest.fixture
def limited(make_runner: Any, workspace: Path) -> Runner:
    for name, body in (("loop_capped", LOOP), ("spin", SINGLE), ("keys", KEYS)):
        (workspace / "workflows" / f"{name}.workflow.yml").write_text(body)
    runner: Runner = make_runner(workspace)
    return runner


def test_a_composite_timeout_interrupts_its_children_and_names_the_composite(
    limited: Runner,
) -> None:
    began = time.monotonic()
    # The default for leaf steps is long: only the loop's own timeout can fire.
    with pytest.raises(StepTimedOut) as timed_out:
        _run(limited, "workflows/loop_capped", limits=Limits(step_timeout=600))
    assert time.monotonic() - began < 10
    assert timed_out.value.step == "tasks.0" and timed_out.value.task == "regions"
    assert timed_out.value.code == "step_timeout"
    assert "timeout of 1 s" in timed_out.value.message
    failed = [e["step"] for e in limited.events if e["event"] == "step_failed"]
    assert "tasks.0" in failed and any(k.startswith("tasks.0.iter.") for k in failed)


def test_a_stop_interrupts_the_statement_in_flight(limited: Runner) -> None:
    journal = MemoryJournal()
    began = time.monotonic()

    def running() -> bool:
        return any(e["event"] == "step_started" for e in limited.events)

    with pytest.raises(RunCancelled) as stopped:
        _run(limited, "workflows/spin", should_stop=running, journal=journal)
    assert time.monotonic() - began < 10
    assert stopped.value.step == "tasks.0"
    assert journal.entries == {}  # nothing checkpointed: a resume runs the step again
    assert limited.events[-1]["event"] == "run_cancelled"
    assert not [e for e in limited.events if e["event"] == "step_failed"]


def test_step_names_in_templates(limited: Runner) -> None:
    first = _run(limited, "workflows/keys", run_id="r1", attempt=1)
    again = _run(limited, "workflows/keys", run_id="r1", attempt=2)
    texts = [str(item["key"].text) for item in first.outputs["each"].items]  # type: ignore[attr-defined]
    assert texts == ["r1:tasks.0.iter.0.tasks.0 1", "r1:tasks.0.iter.1.tasks.0 1"]
    retried = [str(item["key"].text) for item in again.outputs["each"].items]  # type: ignore[attr-defined]
    # Another attempt of the same run: the same keys, a new attempt number.
    assert retried == ["r1:tasks.0.iter.0.tasks.0 2", "r1:tasks.0.iter.1.tasks.0 2"]
    assert first.outputs["named"].text == "tasks.1"  # type: ignore[union-attr]
    # A task (or variable) named step wins over Quarry's ``step``.
    assert first.outputs["shadowed"].text == "a task named step"  # type: ignore[union-attr]
