"""Local mode's live edit loop: watch a workspace folder and recompile on save.

``quarry serve DIR`` compiles the folder once at start; before this module nothing
looked at the folder again, so a saved YAML file changed nothing until someone ran
``quarry compile .`` (the Factory's :class:`~quarry.factory.autocompile.AutoCompiler`
only hears about writes made through the IDE file API). :class:`FolderWatcher` listens
to the operating system's file events (``watchfiles``), waits until the folder has
been quiet for the debounce time (editors save in bursts), and compiles through
:meth:`Factory.compile_now` — so the compile takes the working copy's lock, follows
the promotion rule and lands in ``compile_status`` exactly like an IDE save. Each
outcome is handed to ``report`` (the CLI prints it).

Local state inside the folder (``.quarry/``: state database, blobs, caches) and the
usual tool folders (``.git/``, editor swap files) are ignored: a compile writes its
stat cache there and must not trigger itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles  # installed with uvicorn[standard], which already watches with it

from quarry.core.errors import CompileFailed, Problem, QuarryError
from quarry.factory.compiler import CompileResult
from quarry.factory.service import Factory

log = logging.getLogger(__name__)

LOCAL_STATE_DIR = ".quarry"


@dataclass(frozen=True)
class WatchOutcome:
    """One recompile after a change: its result, or why it failed."""

    changed: list[str]
    result: CompileResult | None = None
    error: str | None = None
    problems: list[Problem] = field(default_factory=list)


def workspace_filter(root: Path, extra_ignored: list[Path]) -> watchfiles.DefaultFilter:
    """Changes that matter: not ``.quarry/``, ``.git/``, swap files or ``extra_ignored``."""
    ignored = [str(p.resolve()) for p in extra_ignored if p.resolve().is_relative_to(root)]
    return watchfiles.DefaultFilter(
        ignore_dirs=(*watchfiles.DefaultFilter.ignore_dirs, LOCAL_STATE_DIR),
        ignore_paths=ignored,
    )


class FolderWatcher:
    """One thread: wait for a quiet burst of changes, compile, report, repeat."""

    def __init__(
        self,
        factory: Factory,
        tenant_id: str,
        workspace: str,
        root: Path,
        report: Callable[[WatchOutcome], None],
        *,
        debounce_seconds: float = 0.5,
        ignored: list[Path] | None = None,
    ) -> None:
        self.factory = factory
        self.tenant_id = tenant_id
        self.workspace = workspace
        self.root = root.resolve()
        self.report = report
        # watchfiles yields a batch once no new change arrived for ``step`` ms.
        self.quiet_ms = max(50, int(debounce_seconds * 1000))
        self.filter = workspace_filter(self.root, ignored or [])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="quarry-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        try:
            for changes in watchfiles.watch(
                self.root,
                watch_filter=self.filter,
                step=self.quiet_ms,
                debounce=max(1600, self.quiet_ms * 4),
                stop_event=self._stop,
                raise_interrupt=False,
            ):
                changed = sorted({Path(p).relative_to(self.root).as_posix() for _, p in changes})
                self.report(self.compile(changed))
        except Exception:  # a watcher that dies must say so; serving goes on
            log.exception("watching %s stopped", self.root)

    def compile(self, changed: list[str]) -> WatchOutcome:
        """Compile the folder now (under the Factory's lock) and describe the outcome."""
        try:
            ws = self.factory.workspace(self.tenant_id, self.workspace)
            result = self.factory.compile_now(ws)
        except CompileFailed as exc:
            return WatchOutcome(changed, error=exc.message, problems=list(exc.problems))
        except QuarryError as exc:
            return WatchOutcome(changed, error=exc.message)
        return WatchOutcome(changed, result=result)
