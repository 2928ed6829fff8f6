"""The ``quarry`` command."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

import quarry.cli_schedules
import quarry.cli_workspaces
from quarry import cli_agents, cli_fleet, cli_init, cli_runs, cli_semantic, cli_tokens
from quarry.cli_output import make_console
from quarry.core.errors import CompileFailed, ConfigurationError, Problem, QuarryError
from quarry.core.logs import configure_logging, set_verbose
from quarry.core.roles import Role

if TYPE_CHECKING:
    from quarry.core.settings import Settings
    from quarry.runtime.services import Services

app = typer.Typer(
    help="Quarry: compile Oxy-format workspaces from git, and serve, schedule and run them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = make_console(stderr=True)
out = make_console()
log = logging.getLogger("quarry")

PathArg = Annotated[
    Path | None,
    typer.Argument(help="Workspace folder (default: the current folder).", show_default=False),
]


@app.callback()
def _global_options(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show the machinery's log lines (migrations, ...)."),
    ] = False,
) -> None:
    set_verbose(verbose)


def _settings(workspace: Path | None, **overrides: object) -> Settings:
    # pydantic-settings is imported by the commands that load settings, not by --help.
    from quarry.core.settings import load_settings
    from quarry.runtime.engine.templating import set_default_strict, set_limits

    settings = load_settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    set_default_strict(settings.strict_templates)
    set_limits(fuel=settings.template_fuel, max_output_chars=settings.template_max_output_chars)
    return settings.with_local_defaults(workspace)


StrictTemplates = Annotated[
    bool,
    typer.Option(
        "--strict-templates",
        help="An undefined name in a template is an error (QUARRY_STRICT_TEMPLATES).",
    ),
]


def _fail(exc: QuarryError) -> typer.Exit:
    if isinstance(exc, CompileFailed):
        _print_problems(exc.problems)
        errors = sum(1 for p in exc.problems if not p.is_warning)
        warnings = len(exc.problems) - errors
        console.print(
            f"[red]compile failed:[/red] {errors} error(s)"
            + (f", {warnings} warning(s)" if warnings else "")
        )
    else:
        console.print(f"[red]error:[/red] {exc.message}", markup=True, highlight=False)
    return typer.Exit(1)


@app.command()
def migrate() -> None:
    """Apply pending schema migrations (what a dedicated migrate job runs)."""
    from quarry.store.db import create_state_engine
    from quarry.store.migrate import migrate as run_migrations

    settings = _settings(None)
    assert settings.database_url is not None
    try:
        outcome = run_migrations(create_state_engine(settings.database_url))
    except QuarryError as exc:
        raise _fail(exc) from exc
    if outcome.applied:
        out.print(f"applied {len(outcome.applied)} migration(s); schema at {outcome.head}")
    else:
        out.print(f"schema current at {outcome.head}")


@app.command("compile")
def compile_cmd(
    path: PathArg = None,
    check: Annotated[
        bool, typer.Option("--check", help="Validate only: store and promote nothing.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Workspace name (default: folder name).")] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Treat warnings (keys and files Oxy would ignore) as errors."
        ),
    ] = False,
) -> None:
    """Compile a workspace into a revision and promote it; problems as file:line:col.

    Warnings (what Oxy ignores: unknown keys where Oxy allows them, file kinds Quarry
    does not read yet) are printed but do not stop the compile unless ``--strict``.
    """
    from quarry.factory.compiler import analyze
    from quarry.factory.isolation import CompileLimits, prewarm

    root = (path or Path.cwd()).resolve()
    settings = _settings(root)
    limits = CompileLimits.from_settings(settings)  # the compile process, as the Factory's
    if check or cli_runs.parse_needed_for(settings, root):
        prewarm(limits)  # it starts while the services do (none for an unchanged folder)
    try:
        if check:
            analysis = analyze(root, strict=strict, limits=limits, template_names=True)
            _print_problems(analysis.warnings)
            out.print(
                f"ok: {len(analysis.definitions)} definitions, {len(analysis.files)} files, "
                f"revision {analysis.revision_id}" + _warning_count(analysis.warnings),
                soft_wrap=True,
            )
            return
        from quarry.factory.local import compile_folder
        from quarry.node.services import build_services

        svc = build_services(settings)
        result = compile_folder(svc, settings, root, name, strict=strict)
    except QuarryError as exc:
        raise _fail(exc) from exc
    _print_problems(result.problems)
    state = "unchanged" if result.unchanged else ("promoted" if result.promoted else "stored")
    out.print(
        f"{state}: {result.workspace} @ {result.revision_id} ({result.definitions} definitions, "
        f"{result.blobs_uploaded} blobs uploaded, {result.seconds:.2f}s)"
        + _warning_count(result.problems),
        soft_wrap=True,
    )


def _print_problems(problems: list[Problem]) -> None:
    """One problem per line, never wrapped: editors and CI logs parse file:line:col."""
    for problem in problems:
        out.print(str(problem), markup=False, highlight=False, soft_wrap=True)


def _warning_count(warnings: list[Problem]) -> str:
    count = len(warnings)
    return f"; {count} warning{'s' if count != 1 else ''}" if count else ""


def _compile_served_folder(svc: Services, settings: Settings, root: Path, name: str | None) -> str:
    """Compile the folder ``quarry serve DIR`` serves and return its workspace name.

    A broken file does not stop the server: the problems are printed, the previous
    revision (if any) stays live, and the watcher recompiles once the file is saved
    fixed. Refusing to start sent people back to the terminal to find a typo with no
    page to look at; ``quarry compile`` stays the strict, exit-1 gate for CI."""
    from quarry.factory.local import compile_folder, register_local

    try:
        result = compile_folder(svc, settings, root, name)
    except CompileFailed as exc:
        _print_problems(exc.problems)
        workspace = register_local(svc.engine, settings.tenant, root, name)
        current = svc.catalog.workspace(settings.tenant, workspace.name, fresh=True)
        errors = sum(1 for p in exc.problems if not p.is_warning)
        serving = (
            f"serving the previous revision {current.current_revision_id}"
            if current.current_revision_id
            else "nothing is live yet"
        )
        console.print(
            f"[yellow]compile failed:[/yellow] {errors} error(s) in "
            f"[bold]{workspace.name}[/bold]; {serving}. Fix and save: Quarry recompiles.",
            soft_wrap=True,
            highlight=False,
        )
        return workspace.name
    console.print(
        f"compiled [bold]{result.workspace}[/bold] @ {result.revision_id} "
        f"({result.definitions} definitions)"
    )
    return result.workspace


def _serve(settings: Settings, root: Path | None, name: str | None) -> None:
    import uvicorn

    from quarry.api.app import create_app
    from quarry.node.roles import Process, build_node
    from quarry.node.services import build_services

    if root is not None and settings.role in {Role.SERVE, Role.WORKER}:
        raise _fail(
            ConfigurationError(
                f"role {settings.role.value!r} does not read workspace folders; compile on the "
                "Factory (role ide or all) and start serve replicas without a PATH"
            )
        )
    workspace_name: str | None = None
    try:
        svc = build_services(settings)
        if root is not None:
            workspace_name = _compile_served_folder(svc, settings, root, name)
    except QuarryError as exc:
        raise _fail(exc) from exc
    application = create_app(build_node(svc, Process.SERVER))
    if not svc.topology.serves_ide_routes:
        from quarry.fleet.guard import assert_read_only

        try:
            assert_read_only(settings.role.value)
        except QuarryError as exc:
            raise _fail(exc) from exc
    url = f"http://{settings.host}:{settings.port}/"
    console.print(f"Quarry ({settings.role.value}) listening on [bold]{url}[/bold]")
    from quarry.cli_banner import app_urls, auth_banner

    for app_url in app_urls(svc, settings, workspace_name, url) if workspace_name else []:
        console.print(f"dashboard: [bold]{app_url}[/bold]", soft_wrap=True, highlight=False)
    console.print(auth_banner(settings, application), soft_wrap=True, highlight=False)
    watcher = None
    if root is not None and workspace_name is not None:
        from quarry.cli_watch import start_watching  # recompile on save (local mode)

        watcher = start_watching(application, settings, root, workspace_name, console)
    try:
        uvicorn.run(
            application,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=settings.access_log,
        )
    finally:
        if watcher is not None:
            watcher.stop()


@app.command()
def serve(
    path: PathArg = None,
    role: Annotated[Role | None, typer.Option(help="ide | serve | worker | all")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    name: Annotated[str | None, typer.Option(help="Workspace name (default: folder name).")] = None,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="Shorthand for QUARRY_INPROCESS_WORKERS=off.")
    ] = False,
    strict_templates: StrictTemplates = False,
) -> None:
    """Serve Quarry; with PATH, compile that workspace first (local mode)."""
    root = path.resolve() if path is not None else None
    settings = _settings(
        root,
        role=role,
        host=host,
        port=port,
        inprocess_workers="off" if no_workers else None,
        strict_templates=True if strict_templates else None,
    )
    _serve(settings, root, name)


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to create the demo workspace.")
    ] = Path("quarry-demo"),
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Create a demo workspace (sample shop data, a semantic view, workflows, an app,
    an agent), compile it and serve it on SQLite + a local object store."""
    from quarry.demo import create_demo_workspace

    root = directory.resolve()
    if root.exists() and any(root.iterdir()):
        console.print(f"using the existing demo workspace at {root}")
    else:
        create_demo_workspace(root)
        console.print(f"created a demo workspace at {root}")
    settings = _settings(root, role=Role.ALL, host=host, port=port)
    _serve(settings, root, "demo")


cli_runs.register(app, _settings, _fail)
quarry.cli_workspaces.register(app, _settings, _fail)
cli_fleet.register(app, _settings, _fail)
quarry.cli_schedules.register(app, _settings, _fail)
cli_tokens.register(app, _settings, _fail)
cli_semantic.register(app, _settings, _fail)
cli_agents.register(app, _settings, _fail)
cli_init.register(app, _settings, _fail)


def main() -> None:
    from quarry.cli_output import never_wrap_when_piped

    never_wrap_when_piped()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
