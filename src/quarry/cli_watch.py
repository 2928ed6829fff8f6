"""``quarry serve DIR``: recompile on save and say what happened in the terminal.

The loop itself is :class:`quarry.factory.watch.FolderWatcher`; this module wires it
to the running application's Factory and prints each outcome: one line for a
successful compile (promoted, unchanged), or the problems as ``file:line:col`` lines
(never wrapped: editors and terminals link them) and a one-line failure summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from quarry.core.settings import Settings


def start_watching(
    application: Any, settings: Settings, root: Path, workspace: str, console: Console
) -> Any | None:
    """Start watching ``root`` for the app's Factory; ``None`` when there is no Factory
    (a serve replica reads revisions, never folders). Returns the watcher to stop."""
    factory = getattr(application.state, "factory", None)
    if factory is None:
        return None
    from quarry.factory.watch import FolderWatcher, WatchOutcome

    def report(outcome: WatchOutcome) -> None:
        changed = ", ".join(outcome.changed[:3]) + (
            f" (+{len(outcome.changed) - 3} more)" if len(outcome.changed) > 3 else ""
        )
        for problem in outcome.problems:
            console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        result = outcome.result
        if result is None:
            console.print(
                f"[red]compile failed[/red] after changes to {changed}: {outcome.error} "
                "(still serving the previous revision)",
                soft_wrap=True,
                highlight=False,
            )
            return
        for problem in result.problems:
            console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        state = "unchanged" if result.unchanged else ("live" if result.promoted else "draft")
        console.print(
            f"recompiled [bold]{result.workspace}[/bold] @ {result.revision_id} ({state}, "
            f"{result.definitions} definitions, {result.seconds:.2f}s) after changes to "
            f"{changed}" + (f"; {len(result.problems)} warning(s)" if result.problems else ""),
            soft_wrap=True,
            highlight=False,
        )

    watcher = FolderWatcher(
        factory,
        settings.tenant,
        workspace,
        root,
        report,
        debounce_seconds=settings.compile_debounce_seconds,
        ignored=[p for p in (settings.data_dir, settings.workspaces_dir) if p is not None],
    )
    watcher.start()
    console.print(f"watching [bold]{root}[/bold]: saved changes recompile and go live")
    return watcher
