"""``quarry ask AGENT "question"``: one turn of an agent of a working copy, here
(and ``quarry test``: the agents' tests, :mod:`quarry.agents.evals`).

The workspace folder is compiled as ``quarry run`` compiles it, then the agent
answers: its text streams to stdout as the model writes it; each tool call (with
its SQL) and its outcome go to stderr, so ``quarry ask ... > answer.txt`` keeps
only the answer. Exit status 0 when answered, 1 when the turn ended without an
answer (max_iterations) or failed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quarry.cli_output import make_console
from quarry.core.errors import QuarryError

if TYPE_CHECKING:
    from quarry.core.settings import Settings

console = make_console(stderr=True, highlight=False)


class _Printer:
    """Turn events as a terminal shows them."""

    def __init__(self) -> None:
        self.mid_line = False

    def _break(self) -> None:
        if self.mid_line:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.mid_line = False

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "text_delta":
            sys.stdout.write(event["text"])
            sys.stdout.flush()
            self.mid_line = not event["text"].endswith("\n")
        elif kind == "tool_call":
            self._break()
            console.print(f"[cyan]→ {event['name']}[/cyan] {_shown_arguments(event['arguments'])}")
        elif kind == "tool_result":
            self._break()
            if "error" in event:
                console.print(f"[yellow]  ✗ {event['error']}[/yellow]", markup=True)
            elif "rows" in event:
                cut = " (truncated for the model)" if event.get("truncated") else ""
                console.print(f"[green]  ✓ {event['rows']} rows{cut}[/green]")
            else:
                console.print("[green]  ✓[/green]")
        elif kind == "warning":
            self._break()
            console.print(f"[yellow]warning:[/yellow] {event['message']}")
        elif kind == "done":
            self._break()
            console.print(
                f"[dim]{event['status']}: {event['model_calls']} model call(s), "
                f"{event['tool_calls']} tool call(s), {event['input_tokens']} + "
                f"{event['output_tokens']} tokens[/dim]"
            )


def _shown_arguments(raw: str) -> str:
    try:
        arguments = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(arguments, dict) and isinstance(arguments.get("sql"), str):
        sql: str = arguments["sql"]
        return "\n    " + sql.strip().replace("\n", "\n    ")
    return raw


def ask_locally(
    settings: Settings, root: Path, agent: str, question: str, variables: dict[str, Any]
) -> int:
    from quarry.agents.service import ask_agent
    from quarry.factory.isolation import CompileLimits
    from quarry.factory.local import compile_local
    from quarry.node.services import build_services
    from quarry.runtime.connectors import BlobCache, Connections
    from quarry.runtime.source import RevisionSource

    svc = build_services(settings)
    try:
        result = compile_local(
            svc.engine,
            svc.store,
            settings.tenant,
            root,
            data_dir=settings.data_dir,
            limits=CompileLimits.from_settings(settings),
        )
        for problem in result.problems:
            console.print(str(problem), markup=False, soft_wrap=True)
        workspace = svc.catalog.workspace(settings.tenant, result.workspace, fresh=True)
        source = RevisionSource(svc.catalog, workspace, result.revision_id)
        cache = BlobCache(svc.paths.cache_dir)
        connections = Connections(source, cache)
        printer = _Printer()
        try:
            turn = asyncio.run(
                ask_agent(
                    source, connections, agent, question, variables=variables, on_event=printer
                )
            )
        finally:
            connections.close()
    finally:
        svc.close()
    if turn.status != "answered":
        console.print(f"[red]{turn.answer}[/red]")
        return 1
    return 0


def test_locally(
    settings: Settings,
    root: Path,
    target: str | None,
    threshold: float,
    json_out: Path | None,
    junit_out: Path | None,
    compare: CompareOptions | None,
) -> int:
    """Run the ``tests:`` of the working copy's agents (all, or those under
    ``target``); a table on stdout, JSON and JUnit XML where asked; 1 when a test
    scores under ``threshold``. The results are stored under the working copy's git
    commit and branch, and compared with another branch's when asked."""
    from rich.table import Table

    from quarry.agents.evals import TestResult, junit_xml, run_agent_tests, run_workflow_tests
    from quarry.agents.test_files import run_test_file
    from quarry.factory.isolation import CompileLimits
    from quarry.factory.local import compile_local
    from quarry.node.services import build_services
    from quarry.runtime.connectors import BlobCache, Connections
    from quarry.runtime.source import RevisionSource

    prefix = None
    if target:
        given = Path(target)
        absolute = given if given.is_absolute() else (Path.cwd() / given)
        try:
            prefix = absolute.resolve().relative_to(root).as_posix()
        except ValueError:
            prefix = target.strip("/")
        prefix = "" if prefix == "." else prefix
    svc = build_services(settings)
    results: list[TestResult] = []
    try:
        compiled = compile_local(
            svc.engine,
            svc.store,
            settings.tenant,
            root,
            data_dir=settings.data_dir,
            limits=CompileLimits.from_settings(settings),
        )
        workspace = svc.catalog.workspace(settings.tenant, compiled.workspace, fresh=True)
        source = RevisionSource(svc.catalog, workspace, compiled.revision_id)

        def listed(kind: str) -> list[dict[str, Any]]:
            body = svc.catalog.definitions(workspace, compiled.revision_id, kind).body
            found: list[dict[str, Any]] = json.loads(body)["definitions"]
            return [d for d in found if not prefix or d["path"].startswith(prefix)]

        def read_file(path: str) -> bytes:
            """A dataset of the working copy (inside it: ``..`` cannot leave it)."""
            file = (root / path).resolve()
            if not file.is_relative_to(root):
                raise ValueError(f"{path!r} is outside the workspace")
            return file.read_bytes()

        agents = listed("agent")
        workflows = listed("workflow")
        test_files, results = _test_files(root, prefix)
        if compare is not None and compare.only:
            agents, workflows, test_files, results = [], [], [], []
        connections = Connections(source, BlobCache(svc.paths.cache_dir))
        try:
            for found in agents:
                results += asyncio.run(
                    run_agent_tests(
                        source,
                        connections,
                        found["path"],
                        threshold,
                        lambda line: console.print(f"[dim]{line}[/dim]"),
                        read_file,
                    )
                )
            for found in workflows:
                results += asyncio.run(
                    run_workflow_tests(
                        source,
                        connections,
                        found["path"],
                        threshold,
                        lambda line: console.print(f"[dim]{line}[/dim]"),
                        read_file,
                    )
                )
            for test_file in test_files:
                results += asyncio.run(
                    run_test_file(
                        source,
                        connections,
                        test_file,
                        threshold,
                        lambda line: console.print(f"[dim]{line}[/dim]"),
                    )
                )
        finally:
            connections.close()
        regressions, provenance = _record_and_compare(
            svc.engine, settings.tenant, workspace.id, compiled.revision_id, root, threshold,
            results, compare,
        )  # fmt: skip
    finally:
        svc.close()
    if compare is not None and compare.only:
        return 1 if regressions and compare.fail_on_regression else 0
    table = Table("agent test", "runs", "score", "SQL results", "result")
    for r in results:
        shown = "skipped" if r.score is None else ("pass" if r.passed else "FAIL")
        shown = "ERROR" if "error" in r.detail else shown
        sql = f"{r.detail['sql_equal']}/{r.runs} equal" if "sql_equal" in r.detail else ""
        table.add_row(r.name, str(r.runs), "-" if r.score is None else f"{r.score:.2f}", sql, shown)
    make_console().print(table)
    if json_out is not None:
        body = {**provenance, "threshold": threshold, "tests": [r.to_json() for r in results]}
        json_out.write_text(json.dumps(body, indent=2) + "\n")
    if junit_out is not None:
        junit_out.write_text(junit_xml(results, threshold))
    if not results:
        console.print("no agent tests found")
    if regressions and compare is not None and compare.fail_on_regression:
        return 1
    return 1 if any(not r.passed for r in results) else 0


@dataclass(frozen=True)
class CompareOptions:
    base: str | None = None
    """Compare the branch's results with this branch's (None: no comparison)."""
    branch: str | None = None
    """Record and compare under this branch name (default: git's current branch)."""
    only: bool = False
    """Compare the stored results, run nothing."""
    fail_on_regression: bool = False
    json_out: Path | None = None


def _record_and_compare(
    engine: Any,
    tenant: str,
    workspace_id: str,
    revision_id: str,
    root: Path,
    threshold: float,
    results: list[Any],
    compare: CompareOptions | None,
) -> tuple[int, dict[str, Any]]:
    """Store this run's results (keyed by workspace, git commit and branch) and print
    the comparison asked for; the number of regressions, and what the results were
    recorded under (revision, commit, branch, dirty) for ``--json``."""
    from rich.table import Table

    from quarry.agents.eval_compare import compare_branches, comparison_json
    from quarry.factory.gitinfo import read_git_info
    from quarry.store.eval_results import EvalResultRow, record_run

    git = read_git_info(root)
    branch = (compare.branch if compare else None) or git.branch
    if results:
        rows = [EvalResultRow(r.name, r.agent, r.kind, r.score, r.passed, r.runs) for r in results]
        with engine.begin() as conn:
            record_run(
                conn,
                tenant_id=tenant,
                workspace_id=workspace_id,
                revision_id=revision_id,
                git_commit=git.commit,
                branch=branch,
                dirty=git.dirty,
                threshold=threshold,
                results=rows,
            )
    provenance = {
        "revision": revision_id,
        "commit": git.commit,
        "branch": branch,
        "dirty": git.dirty,
    }
    if compare is None or compare.base is None:
        return 0, provenance
    if branch is None:
        raise BadParameter("--compare: the working copy is on no git branch; name it with --branch")
    deltas = compare_branches(engine, tenant, workspace_id, branch, compare.base)
    table = Table(f"test ({branch} vs {compare.base})", "base", "branch", "delta", "")
    for d in deltas:
        shown = {"regressed": "REGRESSED", "improved": "improved"}.get(d.status, d.status)
        table.add_row(
            d.test,
            "-" if d.base is None or d.base.score is None else f"{d.base.score:.2f}",
            "-" if d.branch is None or d.branch.score is None else f"{d.branch.score:.2f}",
            "" if d.delta is None else f"{d.delta:+.2f}",
            shown,
        )
    make_console().print(table)
    regressions = sum(d.regression for d in deltas)
    if compare.json_out is not None:
        body = comparison_json(branch, compare.base, deltas)
        compare.json_out.write_text(json.dumps(body, indent=2) + "\n")
    if regressions:
        console.print(f"[red]{regressions} regression(s) against {compare.base}[/red]")
    return regressions, provenance


class BadParameter(QuarryError):
    status_code = 400
    code = "bad_parameter"


def _test_files(root: Path, prefix: str | None) -> tuple[list[Any], list[Any]]:
    """Oxy's ``*.test.yml`` files of the working copy (those under ``prefix``, or
    testing an agent under it), parsed; a file that does not parse is a failed
    result carrying its ``file:line`` problems (an error, not a silent skip)."""
    from quarry.agents.evals import TestResult
    from quarry.agents.test_files import find_test_files, parse_test_file
    from quarry.core.errors import CompileFailed

    def under(path: str) -> bool:
        return not prefix or path == prefix or path.startswith(prefix.rstrip("/") + "/")

    parsed = []
    failed: list[TestResult] = []
    for path in find_test_files(root):
        try:
            test = parse_test_file(path, (root / path).read_bytes(), lambda p: (root / p).is_file())
        except CompileFailed as exc:
            if under(path):
                message = "; ".join(str(p) for p in exc.problems)
                failed.append(
                    TestResult(path, path, "test_file", None, 0, False, {"error": message})
                )
                console.print(message, markup=False, soft_wrap=True)
            continue
        if under(path) or under(test.target):
            parsed.append(test)
    return parsed, failed


def register(app: typer.Typer, settings_for: Any, fail: Any) -> None:
    @app.command(name="test")
    def test_command(
        path: Annotated[
            str | None,
            typer.Argument(help="An agent file or a folder (default: every agent)."),
        ] = None,
        workspace: Annotated[
            Path | None, typer.Option(help="Workspace folder (default: the current folder).")
        ] = None,
        min_score: Annotated[
            float, typer.Option("--min-score", help="A test under this score fails.")
        ] = 0.8,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the results as JSON here.")
        ] = None,
        junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
        compare: Annotated[
            str | None,
            typer.Option(
                "--compare",
                help="Compare this branch's results with this branch's (e.g. main).",
            ),
        ] = None,
        branch: Annotated[
            str | None,
            typer.Option(help="Record the results under this branch (default: git's)."),
        ] = None,
        compare_only: Annotated[
            bool,
            typer.Option("--compare-only", help="With --compare: run nothing, compare stored."),
        ] = False,
        fail_on_regression: Annotated[
            bool,
            typer.Option("--fail-on-regression", help="Exit 1 when --compare finds a regression."),
        ] = False,
        compare_json: Annotated[
            Path | None, typer.Option("--compare-json", help="Write the comparison as JSON.")
        ] = None,
    ) -> None:
        """Run the agents' tests (consistency and test cases), Oxy's *.test.yml
        files and the workflows' consistency tests, scored by a judge model; exit 1
        when one scores under --min-score."""
        root = (workspace or Path.cwd()).resolve()
        settings = settings_for(root)
        try:
            options = CompareOptions(
                compare, branch, compare_only, fail_on_regression, compare_json
            )
            if compare_only and compare is None:
                raise BadParameter("--compare-only needs --compare BRANCH")
            code = test_locally(settings, root, path, min_score, json_out, junit, options)
        except QuarryError as exc:
            raise fail(exc) from exc
        raise typer.Exit(code)

    @app.command()
    def ask(
        agent: Annotated[
            str, typer.Argument(help="The agent: agents/x.agent.yml or its name agents/x.")
        ],
        question: Annotated[str, typer.Argument(help="The question.")],
        var: Annotated[
            list[str] | None, typer.Option("--var", help="A variable, key=value (repeatable).")
        ] = None,
        workspace: Annotated[
            Path | None, typer.Option(help="Workspace folder (default: the current folder).")
        ] = None,
    ) -> None:
        """Ask an agent of a working copy a question; the answer streams as it comes,
        with the tools it calls (and their SQL) on stderr."""
        from quarry.cli_runs import parse_vars

        root = (workspace or Path.cwd()).resolve()
        settings = settings_for(root)
        try:
            code = ask_locally(settings, root, agent, question, parse_vars(var or []))
        except QuarryError as exc:
            raise fail(exc) from exc
        raise typer.Exit(code)
