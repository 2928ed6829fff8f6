"""One owner for runs (issue #14): a scan of the source for anything that would
create a run, mint its id or write its first event outside
``quarry.runtime.runs.service``, or spell a run event on the wire outside the
vocabulary in ``quarry.runtime.runs.events``. The entry points themselves are
exercised in tests/integration/runs/test_run_creation.py."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import quarry
from quarry.runtime.runs.events import RunEvent

SRC = Path(quarry.__file__).parent
OWNER = "runtime/runs/service.py"
VOCABULARY = "runtime/runs/events.py"


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if not rel.startswith("store/migrations/"):
            yield rel, ast.parse(path.read_text(), filename=rel)


def called(tree: ast.AST, name: str) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == name) or (
                isinstance(func, ast.Attribute) and func.attr == name
            ):
                return True
    return False


def test_only_the_owner_writes_run_rows_and_builds_them() -> None:
    inserting = {rel for rel, tree in modules() if called(tree, "insert_runs")}
    assert inserting == {OWNER}
    building = {rel for rel, tree in modules() if called(tree, "RunRow")}
    assert building == {OWNER, "store/runs.py"}  # store/runs.py: reading rows back
    minting = {rel for rel, tree in modules() if called(tree, "new_run_id")}
    assert minting <= {OWNER, "scheduling/ticks.py"}  # the scheduler's CAS needs the id


def test_only_the_owner_writes_run_queued() -> None:
    """``{"type": RunEvent.QUEUED, ...}`` is built in one place (others may match it)."""
    writers = set()
    for rel, tree in modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Dict):
                continue
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "type"
                    and isinstance(value, ast.Attribute)
                    and value.attr == "QUEUED"
                    and isinstance(value.value, ast.Name)
                    and value.value.id == "RunEvent"
                ):
                    writers.add(rel)
    assert writers == {OWNER}


def test_run_event_names_are_spelled_only_in_the_vocabulary() -> None:
    wire = {event.value for event in RunEvent}
    spelled = {
        rel
        for rel, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in wire | {"run.finished"}
    }
    assert spelled == {VOCABULARY}


def test_the_web_pages_match_only_names_of_the_vocabulary() -> None:
    """JavaScript cannot import the enum: what it spells must be in it (and the
    dropped duplicate ``run.finished`` nowhere)."""
    for path in (SRC / "web").rglob("*"):
        if path.suffix not in {".js", ".html"} or "vendor" in path.parts:
            continue
        quoted = re.findall(r"[\"'`]((?:run|step|agent)\.[a-z_]+)[\"'`]", path.read_text())
        names = {n for n in quoted if n.rsplit(".", 1)[1] not in {"js", "html", "css"}}
        assert names <= wire_names(), f"{path.relative_to(SRC)}: {names - wire_names()}"


def wire_names() -> set[str]:
    return {event.value for event in RunEvent}


def test_every_engine_event_has_its_stored_form() -> None:
    """The engine's step events map to the vocabulary; its run-level notices are not
    stored (the run's owner writes those, once)."""
    names: set[str] = set()
    for _rel, tree in modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "emit"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value)
    names |= {"agent_tool_call", "agent_tool_result", "agent_done"}  # f"agent_{kind}"
    assert {"step_started", "step_finished", "run_started", "run_finished"} <= names
    for name in names:
        stored = RunEvent.from_engine(name)
        if name.startswith("run_"):
            assert stored is None, name
        else:
            assert stored is not None and stored.value == name.replace("_", ".", 1), name


def test_outcomes() -> None:
    assert [RunEvent.outcome(s) for s in ("succeeded", "failed", "cancelled")] == [
        RunEvent.SUCCEEDED,
        RunEvent.FAILED,
        RunEvent.CANCELLED,
    ]
    assert {e for e in RunEvent if e.terminal} == {
        RunEvent.SUCCEEDED,
        RunEvent.FAILED,
        RunEvent.CANCELLED,
    }
