"""Hostile YAML is refused with a positioned problem, cheaply, and without a crash.

The depth bomb is the one that segfaulted the Factory: the C composer recurses on the
C stack without a guard, so it runs here in a child interpreter: if the guard were
missing, the child would die of SIGSEGV instead of printing the problem.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from quarry.core.errors import CompileFailed
from quarry.definitions import parse_definition
from quarry.definitions.yaml_nodes import YamlLimits, _may_be_too_deep
from tests.unit.definitions.conftest import parse_text, problems_of

DEPTH = "(limit yaml_max_depth)"
ALIASES = "(limit yaml_max_alias_nodes)"


def _laughs(levels: int) -> str:
    """The classic: nine aliases of the level below, ``levels`` times."""
    lines = ["name: laughs", "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_depth_bomb_is_a_problem_not_a_segfault() -> None:
    """30,000 levels in 60 KB (the reported file), in a child: a crash would show."""
    code = textwrap.dedent(
        """
        from quarry.core.errors import CompileFailed
        from quarry.definitions import parse_definition
        data = b"tasks: " + b"[" * 30000 + b"]" * 30000 + b"\\n"
        try:
            parse_definition("bomb.workflow.yml", data)
        except CompileFailed as exc:
            print(exc.problems[0])
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"the parser crashed ({done.returncode}): {done.stderr}"
    assert done.stdout.strip() == (
        "bomb.workflow.yml:1:107: invalid YAML: nested more than 100 levels deep " + DEPTH
    )


@pytest.mark.parametrize(
    "text",
    [
        "tasks:\n" + "- " * 5000 + "x\n",  # block sequences on one line
        "tasks: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",  # flow mappings
        "tasks:\n" + "".join("  " * i + f"k{i}:\n" for i in range(150)),  # indentation
    ],
    ids=["block", "flow-mapping", "indented"],
)
def test_deep_nesting_of_every_shape_is_refused(text: str) -> None:
    (problem,) = problems_of("deep.workflow.yml", text.encode())
    assert problem.startswith("deep.workflow.yml:") and problem.endswith(DEPTH)


def test_billion_laughs_is_refused_quickly_at_the_alias() -> None:
    started = time.perf_counter()
    assert problems_of("lol.workflow.yml", _laughs(9).encode()) == [
        "lol.workflow.yml:6:4: invalid YAML: aliases expand to more than 10000 nodes " + ALIASES
    ]
    assert time.perf_counter() - started < 1.0


def test_a_recursive_alias_is_refused() -> None:
    assert problems_of("r.workflow.yml", b"tasks: &t [1, *t]\n") == [
        "r.workflow.yml:1:8: invalid YAML: an alias refers to a collection that contains it"
    ]


def test_aliases_that_nest_too_deep_once_expanded_are_refused() -> None:
    """Each level is shallow; following the aliases it is not."""
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 120)]
    (problem,) = problems_of("d.workflow.yml", ("\n".join(lines) + "\n").encode())
    assert problem.endswith(DEPTH)


def test_ordinary_anchors_and_merges_still_work() -> None:
    """Shared defaults merged into several tasks, as Oxy workspaces do."""
    parsed = parse_text(
        "w.workflow.yml",
        """\
        tasks:
          - &first
            name: one
            type: execute_sql
            database: local
            sql_query: select 1
          - <<: *first
            name: two
          - <<: *first
            name: three
        """,
    )
    tasks = parsed.body["tasks"]
    assert [t["name"] for t in tasks] == ["one", "two", "three"]
    assert all(t["database"] == "local" for t in tasks)


def test_limits_are_settings() -> None:
    """A lower limit refuses what the default accepts; a higher one accepts more."""
    nested = b"tasks: " + b"[" * 20 + b"]" * 20 + b"\n"
    with pytest.raises(CompileFailed) as caught:
        parse_definition("n.workflow.yml", nested, YamlLimits(max_depth=10))
    assert "nested more than 10 levels" in caught.value.problems[0].message
    laughs = _laughs(4).replace("name: laughs\n", "").encode()  # 9 + 81 + 729 aliased nodes
    with pytest.raises(CompileFailed) as caught:
        parse_definition("l.workflow.yml", laughs, YamlLimits(max_alias_nodes=100))
    assert ALIASES in caught.value.problems[0].message
    with pytest.raises(CompileFailed) as caught:  # within the budget: the schema speaks
        parse_definition("l.workflow.yml", laughs, YamlLimits(max_alias_nodes=10_000))
    assert ALIASES not in caught.value.problems[0].message


def test_brackets_in_text_do_not_refuse_a_shallow_file() -> None:
    """The cheap pre-check over-counts brackets in strings; the exact count decides."""
    sql = "select " + "[" * 300 + " from t"
    parsed = parse_text(
        "w.workflow.yml",
        f"""\
        tasks:
          - name: one
            type: execute_sql
            database: local
            sql_query: "{sql}"
        """,
    )
    assert parsed.body["tasks"][0]["sql_query"] == sql


def _nested(rng: random.Random, depth: int) -> object:
    if depth == 0:
        return rng.choice(["x", 1, "[not flow]", "a: b"])
    if rng.random() < 0.5:
        return [_nested(rng, depth - 1) for _ in range(rng.randint(1, 2))]
    return {f"k{i}": _nested(rng, depth - 1) for i in range(rng.randint(1, 2))}


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def test_the_cheap_depth_check_never_passes_a_deeper_file() -> None:
    """Whatever it lets through to the C composer is within the limit: random trees
    in block style (indents of 1 to 4), flow style and a mix, at several limits."""
    rng = random.Random(13)
    for _ in range(300):
        tree = {"tasks": _nested(rng, rng.randint(1, 14))}
        actual = _depth(tree)
        for text in (
            yaml.safe_dump(tree, indent=rng.randint(2, 4), default_flow_style=False),
            yaml.safe_dump(tree, default_flow_style=True, width=10**6),
            yaml.safe_dump(tree, default_flow_style=None, width=rng.randint(20, 200)),
        ):
            for limit in (3, 6, 10, 15, 20, 30, 40):
                if not _may_be_too_deep(text, limit):
                    assert actual <= limit, text
