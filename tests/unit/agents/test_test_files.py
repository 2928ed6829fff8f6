"""Oxy's test files (``*.test.yml``) are read as Oxy reads them: unknown keys refused
at every level (``deny_unknown_fields``), ``cases`` required, the target inferred from
the file name; problems name ``file:line:column``."""

from __future__ import annotations

import pytest

from quarry.agents.test_files import inferred_target, is_test_file, parse_test_file
from quarry.core.errors import CompileFailed

PATH = "agents/sales.agent.test.yml"


def _problems(text: str, path: str = PATH) -> list[str]:
    with pytest.raises(CompileFailed) as failed:
        parse_test_file(path, text.encode(), lambda _p: True)
    return [str(p) for p in failed.value.problems]


def test_defaults_and_the_inferred_target_are_oxys() -> None:
    test = parse_test_file(PATH, b"cases:\n  - prompt: Top region?\n    expected: North\n")
    assert test.target == "agents/sales.agent.yml"
    settings = test.config.settings
    assert (settings.concurrency, settings.runs, settings.judge_model) == (5, 3, None)
    assert inferred_target("tests/a.agent.test.yaml") == "tests/a.agent.yml"
    assert is_test_file("x/a.test.yml") and not is_test_file(".test.yml")


def test_an_explicit_target_is_from_the_workspace_root() -> None:
    text = "target: ./agents//other.agent.yml\ncases: []\n"
    assert parse_test_file("tests/t.test.yml", text.encode()).target == "agents/other.agent.yml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cases:\n  - prompt: a\n    expected: b\n    runz: 2\n", f"{PATH}:4:5:"),
        ("settings:\n  runs: 2\n  retries: 1\ncases: []\n", f"{PATH}:3:3:"),
        ("name: x\nowner: me\ncases: []\n", f"{PATH}:2:1:"),
        ("name: x\n", f"{PATH}:1:1:"),  # cases is required
        ("cases:\n  - prompt: a\n", f"{PATH}:2:5:"),  # expected is required
        ("settings:\n  runs: -1\ncases: []\n", f"{PATH}:2:9:"),
    ],
)
def test_what_oxy_refuses_is_refused_at_its_line(text: str, expected: str) -> None:
    problems = _problems(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_the_target_must_be_an_agent_of_the_workspace() -> None:
    (problem,) = _problems("target: workflows/a.workflow.yml\ncases: []\n")
    assert problem.startswith(f"{PATH}:1:9:") and "is not an .agent.yml file" in problem
    with pytest.raises(CompileFailed) as failed:
        parse_test_file(PATH, b"cases: []\n", lambda _p: False)
    assert "'agents/sales.agent.yml' does not exist" in str(failed.value.problems[0])
    (outside,) = _problems("target: ../x.agent.yml\ncases: []\n")
    assert "outside the workspace" in outside
