"""Oxy's test files (``*.test.yml``), run by ``quarry test`` like an agent's
``tests: - type: test_case``.

The format is Oxy's ``TestFileConfig`` (crates/core/src/config/test_config.rs), read
with ``deny_unknown_fields`` at every level as Oxy reads it::

    name: sales questions          # optional
    target: agents/sales.agent.yml # optional: inferred from the file name
    settings:                      # optional
      concurrency: 5               # turns at once (Oxy's default 5)
      runs: 3                      # answers per case (Oxy's default 3)
      judge_model: openai-4o-mini  # default: the target agent's model
    cases:
      - prompt: Which region sold most?
        expected: North
        name: top region           # optional
        tags: [smoke]              # optional
        tool: execute_sql          # optional: the turn must call this tool

Without ``target``, as Oxy: ``agents/sales.agent.test.yml`` tests the sibling
``agents/sales.agent.yml``. ``target`` is a path from the workspace root. A file that
does not parse is refused with ``file:line`` problems (Oxy's listing skips such files
silently, which would let a typo drop tests from CI unseen).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from quarry.agents.evals import Progress, TestResult, run_cases
from quarry.core.errors import CompileFailed, Problem
from quarry.definitions.errors import validation_problems
from quarry.definitions.kinds import Kind, classify_path
from quarry.definitions.models.common import NonNegativeInt, Strict
from quarry.definitions.models.evals import EvalCase
from quarry.definitions.yaml_nodes import find_key, load_document, position
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.source import RevisionSource

SUFFIXES = (".test.yml", ".test.yaml")
DEFAULT_CONCURRENCY = 5
DEFAULT_RUNS = 3


class TestSettings(Strict):
    concurrency: NonNegativeInt = DEFAULT_CONCURRENCY
    runs: NonNegativeInt = DEFAULT_RUNS
    judge_model: str | None = None


class TestFileConfig(Strict):
    name: str | None = None
    target: str | None = None
    settings: TestSettings = TestSettings()
    cases: list[EvalCase]


@dataclass(frozen=True)
class TestFile:
    path: str
    config: TestFileConfig
    target: str
    target_line: int


def is_test_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(name.endswith(s) and len(name) > len(s) for s in SUFFIXES)


def inferred_target(path: str) -> str:
    """``agents/sales.agent.test.yml`` -> ``agents/sales.agent.yml`` (Oxy's rule: the
    name without ``.test.yml`` plus ``.yml``, in the same folder)."""
    for suffix in SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)] + ".yml"
    raise ValueError(f"{path!r} is not a test file")


def parse_test_file(
    path: str, data: bytes, exists: Callable[[str], bool] | None = None
) -> TestFile:
    """The test file at workspace-relative ``path``; CompileFailed with every problem
    (``file:line:column``) when Oxy would refuse it or its target is not an agent
    of the workspace (``exists``: whether the working copy has a file)."""
    document = load_document(path, data)
    problems: list[Problem] = list(document.problems)
    try:
        config = TestFileConfig.model_validate(document.value)
    except ValidationError as exc:
        problems += validation_problems(path, document.root, exc.errors())
        raise CompileFailed(problems=sorted(set(problems))) from None
    if problems:
        raise CompileFailed(problems=sorted(set(problems)))
    found = find_key(document.root, "target")
    line, column = position(found[1]) if found else (1, 1)
    if config.target is not None:
        target = posixpath.normpath(config.target.strip().replace("\\", "/"))
        if target.startswith("/") or target == ".." or target.startswith("../"):
            raise CompileFailed(
                problems=[
                    Problem(
                        path, line, column, f"target {config.target!r} is outside the workspace"
                    )
                ]
            )
    else:
        target = inferred_target(path)
    what = "target" if config.target is not None else "the target inferred from the file name"
    if classify_path(target) is not Kind.AGENT:
        raise CompileFailed(
            problems=[
                Problem(
                    path,
                    line,
                    column,
                    f"{what} {target!r} is not an .agent.yml file: Quarry runs test files "
                    "for agents",
                )
            ]
        )
    if exists is not None and not exists(target):
        raise CompileFailed(
            problems=[Problem(path, line, column, f"{what} {target!r} does not exist")]
        )
    return TestFile(path, config, target, line)


def find_test_files(root: Path) -> list[str]:
    """The working copy's test files, workspace-relative. Hidden folders
    (``.quarry/``, ``.git/``) are not searched."""
    found = set()
    for suffix in SUFFIXES:
        for file in root.rglob(f"*{suffix}"):
            relative = file.relative_to(root).as_posix()
            if any(part.startswith(".") for part in relative.split("/")[:-1]):
                continue
            if file.is_file() and is_test_file(relative):
                found.add(relative)
    return sorted(found)


async def run_test_file(
    source: RevisionSource,
    connections: Connections,
    test: TestFile,
    threshold: float,
    progress: Progress = lambda _line: None,
) -> list[TestResult]:
    """Every case of the file against its target agent, scored as ``test_case``."""
    settings = test.config.settings
    label = test.path if test.config.name is None else f"{test.path} ({test.config.name})"
    return await run_cases(
        source,
        connections,
        test.target,
        label,
        test.config.cases,
        runs=settings.runs,
        concurrency=settings.concurrency,
        judge_model=settings.judge_model,
        threshold=threshold,
        progress=progress,
        kind="test_file",
    )
