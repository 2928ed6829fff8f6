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
) -> int:
    """Run the ``tests:`` of the working copy's agents (all, or those under
    ``target``); a table on stdout, JSON and JUnit XML where asked; 1 when a test
    scores under ``threshold``."""
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
    finally:
        svc.close()
    table = Table("agent test", "runs", "score", "SQL results", "result")
    for r in results:
        shown = "skipped" if r.score is None else ("pass" if r.passed else "FAIL")
        shown = "ERROR" if "error" in r.detail else shown
        sql = f"{r.detail['sql_equal']}/{r.runs} equal" if "sql_equal" in r.detail else ""
        table.add_row(r.name, str(r.runs), "-" if r.score is None else f"{r.score:.2f}", sql, shown)
    make_console().print(table)
    if json_out is not None:
        body = {"threshold": threshold, "tests": [r.to_json() for r in results]}
        json_out.write_text(json.dumps(body, indent=2) + "\n")
    if junit_out is not None:
        junit_out.write_text(junit_xml(results, threshold))
    if not results:
        console.print("no agent tests found")
    return 1 if any(not r.passed for r in results) else 0


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
    ) -> None:
        """Run the agents' tests (consistency and test cases), Oxy's *.test.yml
        files and the workflows' consistency tests, scored by a judge model; exit 1
        when one scores under --min-score."""
        root = (workspace or Path.cwd()).resolve()
        settings = settings_for(root)
        try:
            code = test_locally(settings, root, path, min_score, json_out, junit)
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
