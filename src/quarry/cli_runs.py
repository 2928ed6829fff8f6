"""``quarry run`` and ``quarry worker``: executing runs from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from quarry.cli_output import make_console
from quarry.core.errors import BadRequest, CompileFailed, NotFound, QuarryError
from quarry.core.roles import Role

if TYPE_CHECKING:
    from quarry.core.settings import Settings

console = make_console(stderr=True)
out = make_console()


def parse_vars(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON (numbers, booleans, lists) is taken
    as such, anything else as text."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BadRequest(f"--var takes key=value, got {pair!r}", parameter="--var")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def resolve_target(root: Path, target: str) -> tuple[str, str]:
    """A file path (``workflows/x.workflow.yml``) or a definition name."""
    from quarry.definitions.kinds import Kind, classify_path, definition_name

    candidate = Path(target)
    relpath = (candidate if candidate.is_absolute() else (Path.cwd() / candidate)).resolve()
    if relpath.is_file() and relpath.is_relative_to(root):
        rel = relpath.relative_to(root).as_posix()
        kind = classify_path(rel)
        if kind is Kind.WORKFLOW:
            # By path: a.workflow.yml and a.procedure.yml may share the stem.
            return kind.value, rel
        if kind is Kind.APP:
            return kind.value, definition_name(rel, kind)
        raise BadRequest(f"{rel} is not a workflow or an app")
    return Kind.WORKFLOW.value, target


def _progress(event: dict[str, Any]) -> None:
    """A step's event as stored in the run's stream (``type``: a RunEvent)."""
    from quarry.runtime.runs.events import RunEvent

    kind = event.get("type")
    step = event.get("step") or ""
    task = event.get("task", "")
    if kind == RunEvent.STEP_STARTED:
        console.print(f"[dim]…[/dim] {step} {task}")
    elif kind == RunEvent.STEP_FINISHED:
        rows = event.get("rows")
        facts = f"{rows} rows, " if rows is not None else ""
        console.print(f"[green]✓[/green] {step} {task} ({facts}{event.get('seconds', 0):.2f}s)")
    elif kind == RunEvent.STEP_REPLAYED:
        console.print(f"[cyan]↺[/cyan] {step} {task} (replayed from checkpoint)")
    elif kind == RunEvent.STEP_FAILED:
        message = (event.get("error") or {}).get("message", "")
        source = event.get("source")  # the file:line of the task (its own line)
        at = f" (at {escape(str(source))})" if source else ""
        console.print(f"[red]✗[/red] {step} {task}: {message}{at}", markup=True, highlight=False)


def run_locally(
    settings: Settings, root: Path, target: str, variables: dict[str, Any], mode: str = "human"
) -> int:
    """Run here; ``mode``: ``human`` (progress, then the outputs), ``json`` or ``quiet``
    (see :mod:`quarry.cli_run_output`)."""
    from quarry.factory.isolation import CompileLimits, prewarm

    limits = CompileLimits.from_settings(settings)
    # A compile process starts first when a file will need parsing: its interpreter
    # start and imports (~0.5 s) overlap this process's own imports and the state
    # database's, instead of following them. An unchanged workspace (the stat cache
    # holds every parse) needs none.
    if parse_needed_for(settings, root):
        prewarm(limits)
    from quarry.definitions.kinds import Kind
    from quarry.factory.local import compile_local
    from quarry.node.services import build_services
    from quarry.runtime.runs.executor import RunExecutor, RunLimits
    from quarry.runtime.runs.service import RunRequest, create_run

    svc = build_services(settings)
    kind, name = resolve_target(root, target)
    revision: str | None = None
    try:
        result = compile_local(
            svc.engine,
            svc.store,
            settings.tenant,
            root,
            data_dir=settings.data_dir,
            limits=limits,
        )
    except CompileFailed as failed:
        result, revision = _compile_for_target(svc, settings, root, target, failed)
    _print_warnings(result.problems)
    workspace = svc.catalog.workspace(settings.tenant, result.workspace, fresh=True)
    request = RunRequest(kind, name, variables, revision=revision, origin="cli")
    try:
        run = create_run(svc, workspace, request, enqueue=False)
    except NotFound:
        if kind != Kind.WORKFLOW:
            raise
        run = create_run(
            svc,
            workspace,
            RunRequest(Kind.APP.value, name, variables, revision=revision, origin="cli"),
            enqueue=False,
        )
    if mode == "human":
        console.print(f"run {run.id}: {run.target_kind} {run.target_name} @ {run.revision_id}")
    executor = RunExecutor(
        svc,
        svc.paths.cache_dir,
        export_root=root,
        on_event=_progress if mode == "human" else None,
        limits=RunLimits.from_settings(settings),
    )
    outcome = executor.execute(run, None)
    with svc.engine.connect() as conn:
        from quarry.store.runs import get_run

        final = get_run(conn, settings.tenant, run.id)
    from quarry.cli_run_output import as_json, collect, print_outputs

    code = 0 if outcome["state"] == "succeeded" else 1
    if mode == "json":
        out.print_json(as_json(final, collect(svc, final)))
    elif mode == "human":
        print_outputs(out, collect(svc, final), root)
    if code == 0 and mode == "human":
        out.print(f"succeeded: run {run.id}")
    elif code:
        console.print(f"[red]failed:[/red] {final.error}", highlight=False)
    return code


def parse_needed_for(settings: Settings, root: Path) -> bool:
    """Whether compiling ``root`` will likely parse a file (see
    :func:`quarry.factory.statcache.parse_needed`); the data folder as
    :func:`quarry.factory.local.compile_local` has it."""
    from quarry.factory.statcache import parse_needed

    return parse_needed((settings.data_dir or root / ".quarry").resolve(), root)


def _compile_for_target(
    svc: Any, settings: Settings, root: Path, target: str, failed: CompileFailed
) -> tuple[Any, str]:
    """The full compile failed: run ``target`` anyway when it and what it needs
    compile (a stored, unpromoted revision without the broken files); the other
    files' problems become warnings. Re-raises when ``target`` is a name, not a
    file, or when it or what it needs is broken."""
    from quarry.factory.local import register_local
    from quarry.factory.partial import compile_for_run

    candidate = Path(target) if Path(target).is_absolute() else Path.cwd() / target
    candidate = candidate.resolve()
    if not candidate.is_file() or not candidate.is_relative_to(root):
        raise failed
    workspace = register_local(svc.engine, settings.tenant, root, None)
    rel = candidate.relative_to(root).as_posix()
    partial = compile_for_run(svc.engine, svc.store, workspace, root, rel, failed)
    _print_warnings(partial.elsewhere)
    console.print(
        f"[yellow]other files have problems[/yellow]: running {rel} at revision "
        f"{partial.result.revision_id}, stored but not promoted"
    )
    return partial.result, partial.result.revision_id


def _print_warnings(problems: list[Any]) -> None:
    for problem in problems:
        out.print(str(problem), markup=False, highlight=False, soft_wrap=True)


def run_worker(settings: Settings) -> None:
    """Build the worker node (a run worker; the driver and the health server when
    configured: ``quarry.node.roles``) and run it until SIGTERM/SIGINT."""
    from quarry.fleet.guard import assert_read_only
    from quarry.node.roles import Process, build_node
    from quarry.node.services import build_services

    svc = build_services(settings)
    try:
        assert_read_only("worker")
        node = build_node(svc, Process.WORKER)
        assert node.run_workers is not None
        owner = node.run_workers.workers[0].owner

        def started() -> None:
            console.print(f"worker {owner} draining the queue (SIGTERM stops gracefully)")

        node.run(on_started=started)
        stats = node.run_workers.stats[0] if node.run_workers.stats else None
        console.print(f"worker {owner} stopped: {stats}")
    finally:
        svc.close()


def register(app: typer.Typer, settings_for: Any, fail: Any) -> None:
    @app.command()
    def run(
        target: Annotated[str, typer.Argument(help="A workflow/app file path or name.")],
        var: Annotated[
            list[str] | None, typer.Option("--var", help="A variable, key=value (repeatable).")
        ] = None,
        workspace: Annotated[
            Path | None, typer.Option(help="Workspace folder (default: the current folder).")
        ] = None,
        strict_templates: Annotated[
            bool,
            typer.Option(
                "--strict-templates",
                help="An undefined name in a template is an error (QUARRY_STRICT_TEMPLATES).",
            ),
        ] = False,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON document (run, outputs).")
        ] = False,
        quiet: Annotated[
            bool, typer.Option("--quiet", "-q", help="No progress and no outputs.")
        ] = False,
    ) -> None:
        """Run a workflow or app of a working copy here, with a progress display, then
        its last report and table; exports are also written at their paths in the
        workspace."""
        root = (workspace or Path.cwd()).resolve()
        settings = settings_for(root, strict_templates=True if strict_templates else None)
        try:
            mode = "json" if as_json else ("quiet" if quiet else "human")
            code = run_locally(settings, root, target, parse_vars(var or []), mode)
        except QuarryError as exc:
            raise fail(exc) from exc
        raise typer.Exit(code)

    @app.command()
    def worker(
        port: Annotated[
            int | None,
            typer.Option(help="Serve /healthz, /readyz and /metrics here (QUARRY_WORKER_PORT)."),
        ] = None,
        batch: Annotated[
            int | None,
            typer.Option(
                min=1,
                help="Claim up to N runs per statement and record their successes together, "
                "for queues of short runs (QUARRY_WORKER_BATCH; docs/queue.md).",
            ),
        ] = None,
    ) -> None:
        """Drain the run queue (role worker; needs a shared PostgreSQL database)."""
        settings = settings_for(None, role=Role.WORKER, worker_port=port, worker_batch=batch)
        try:
            run_worker(settings)
        except QuarryError as exc:
            raise fail(exc) from exc
