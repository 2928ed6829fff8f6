"""``quarry driver``, ``quarry schedules ...`` and ``quarry alerts ...``.

``quarry driver`` runs the global driver (schedules, monitors, reaper, upkeep) and
the scheduling workers alone, without a run worker: a small process for a fleet
that wants its drivers apart from its workers (``quarry worker`` also runs the
driver when the topology says so). The other commands are operator tools that talk
to the state database directly, like ``quarry migrate``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from quarry.cli_output import make_console
from quarry.core.errors import QuarryError
from quarry.core.roles import Role

console = make_console(stderr=True)
out = make_console()

WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="Workspace name.")]
KindOpt = Annotated[str, typer.Option("--kind", help="schedule or monitor.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _services(settings_for: Any) -> Any:
    from quarry.node.services import build_services

    return build_services(settings_for(None))


def _workspace_id(svc: Any, name: str) -> str:
    from quarry.store.workspaces import get_workspace

    with svc.engine.connect() as conn:
        return str(get_workspace(conn, svc.settings.tenant, name).id)


def run_driver(settings: Any) -> None:
    """Build the driver node (the global driver alone: ``quarry.node.roles``) and run
    it until SIGTERM/SIGINT."""
    from quarry.fleet.guard import assert_read_only
    from quarry.node.roles import Process, build_node
    from quarry.node.services import build_services

    svc = build_services(settings)
    try:
        assert_read_only("worker")
        node = build_node(svc, Process.DRIVER)
        assert node.scheduling is not None
        driver = node.scheduling.driver

        def started() -> None:
            console.print(f"driver {driver.node} ready (tick {driver.interval:g}s)")

        node.run(on_started=started)
        console.print(f"driver {driver.node} stopped: {driver.stats.fired} fired")
    finally:
        svc.close()


def _print_schedules(views: list[Any]) -> None:
    table = Table("kind", "name", "cron", "tz", "state", "next", "last scheduled", "last run")
    for v in views:
        state = "paused" if v.paused else ("enabled" if v.enabled else "disabled")
        table.add_row(
            v.kind,
            v.name,
            v.cron,
            v.timezone,
            state,
            v.next_run_at or "-",
            v.last_scheduled_for or "-",
            v.last_run_id or "-",
        )
    out.print(table)


def register(app: typer.Typer, settings_for: Any, fail: Any) -> None:
    schedules = typer.Typer(help="Schedules and monitors: list, pause, resume, trigger, fires.")
    alerts = typer.Typer(help="Monitor alerts: current state and history.")
    app.add_typer(schedules, name="schedules")
    app.add_typer(alerts, name="alerts")

    @app.command()
    def driver() -> None:
        """Run the global driver alone (schedules, monitors, reaper; needs PostgreSQL)."""
        settings = settings_for(None, role=Role.WORKER)
        try:
            run_driver(settings)
        except QuarryError as exc:
            raise fail(exc) from exc

    @schedules.command("list")
    def list_cmd(workspace: WorkspaceOpt, as_json: JsonOpt = False) -> None:
        """Schedules and monitors with their next and last fire times."""
        from quarry.scheduling import admin

        try:
            svc = _services(settings_for)
            ws = _workspace_id(svc, workspace)
            with svc.engine.connect() as conn:
                views = admin.list_schedules(conn, svc.settings.tenant, ws)
        except QuarryError as exc:
            raise fail(exc) from exc
        if as_json:
            out.print_json(json.dumps([v.to_json() for v in views]))
        else:
            _print_schedules(views)

    def _pause(name: str, workspace: str, kind: str, paused: bool) -> None:
        from quarry.scheduling import admin

        try:
            svc = _services(settings_for)
            view = admin.set_paused(
                svc.engine,
                svc.settings.tenant,
                _workspace_id(svc, workspace),
                name,
                paused,
                kind=kind,
            )
        except QuarryError as exc:
            raise fail(exc) from exc
        out.print(
            f"{view.kind} {view.name}: {'paused' if view.paused else 'resumed'}; "
            f"next {view.next_run_at or '-'}"
        )

    @schedules.command("pause")
    def pause(name: str, workspace: WorkspaceOpt, kind: KindOpt = "schedule") -> None:
        """Stop firing (stored in the database; survives promotions)."""
        _pause(name, workspace, kind, True)

    @schedules.command("resume")
    def resume(name: str, workspace: WorkspaceOpt, kind: KindOpt = "schedule") -> None:
        """Fire again from the next due time after now (paused windows are not fired)."""
        _pause(name, workspace, kind, False)

    @schedules.command("trigger")
    def trigger(name: str, workspace: WorkspaceOpt, kind: KindOpt = "schedule") -> None:
        """Fire now, outside the cron (next_run_at is left alone)."""
        from quarry.scheduling import admin

        try:
            svc = _services(settings_for)
            fire = admin.trigger(
                svc,
                svc.settings.tenant,
                _workspace_id(svc, workspace),
                name,
                kind=kind,
            )
        except QuarryError as exc:
            raise fail(exc) from exc
        out.print(f"fired {fire.name}: run {fire.run_id or '-'} task {fire.task_id}")

    @schedules.command("fires")
    def fires(
        name: str, workspace: WorkspaceOpt, kind: KindOpt = "schedule", limit: int = 20
    ) -> None:
        """The fire log of one schedule, newest first."""
        from quarry.scheduling import admin

        try:
            svc = _services(settings_for)
            with svc.engine.connect() as conn:
                rows = admin.list_fires(
                    conn,
                    svc.settings.tenant,
                    _workspace_id(svc, workspace),
                    name,
                    kind=kind,
                    limit=limit,
                )
        except QuarryError as exc:
            raise fail(exc) from exc
        out.print_json(json.dumps(rows))

    @alerts.command("list")
    def alerts_list(workspace: WorkspaceOpt) -> None:
        """Every monitor's alert state."""
        from quarry.scheduling import admin

        try:
            svc = _services(settings_for)
            with svc.engine.connect() as conn:
                rows = admin.list_alerts(conn, svc.settings.tenant, _workspace_id(svc, workspace))
        except QuarryError as exc:
            raise fail(exc) from exc
        table = Table("monitor", "state", "value", "checked", "changed")
        for r in rows:
            table.add_row(
                r["monitor"],
                r["state"],
                json.dumps(r["value"]),
                r["checked_at"],
                r["changed_at"] or "-",
            )
        out.print(table)

    @alerts.command("history")
    def alerts_history(monitor: str, workspace: WorkspaceOpt, limit: int = 20) -> None:
        """State changes of one monitor's alert with their deliveries, newest first."""
        from quarry.scheduling import admin

        try:
            svc = _services(settings_for)
            with svc.engine.connect() as conn:
                rows = admin.alert_history(
                    conn, svc.settings.tenant, _workspace_id(svc, workspace), monitor, limit=limit
                )
        except QuarryError as exc:
            raise fail(exc) from exc
        out.print_json(json.dumps(rows))
