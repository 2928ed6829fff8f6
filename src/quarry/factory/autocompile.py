"""Compile on change: a debounced compile after writes and branch switches.

Editors save in bursts (a rename is a delete and a write; a formatter rewrites many
files), so a change only *requests* a compile; the compile runs once the workspace
has been quiet for ``debounce`` seconds, on one background thread. A request that
arrives while that workspace compiles schedules another compile after it, so the
last change is always compiled. Compiles of one workspace never overlap (the caller's
``compile_fn`` takes the working copy's lock).

What a compile promotes is decided by :func:`promotion_for`: the default branch's
committed state promotes; a branch (or uncommitted edits in cloud mode) becomes a
draft revision — stored and readable by ``?revision=``, never current.

A compile parses definition files in the compile process
(:mod:`quarry.factory.isolation`), under memory, stack and time limits: a poison
file fails that compile (recorded as compile status) and this thread carries on. A
file that took the compile process down is not parsed again until its bytes change,
so repeated requests never turn into a crash loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from quarry.factory.gitinfo import GitInfo
from quarry.store.workspaces import WorkspaceRow

log = logging.getLogger(__name__)


def promotion_for(workspace: WorkspaceRow, info: GitInfo) -> bool:
    """Whether compiling this working copy state may move ``current_revision_id``.

    Cloud mode (an origin): only the default branch's committed state — git is the
    truth, and an uncommitted edit is a draft until it is committed. Local mode: the
    folder is the truth (dirty or not), except on a branch other than a configured
    default branch.
    """
    on_default = workspace.default_branch is None or info.branch == workspace.default_branch
    if workspace.source_kind == "git":
        return (
            info.branch is not None and info.branch == workspace.default_branch and (not info.dirty)
        )
    return on_default


def status_branch(info: GitInfo) -> str:
    """The compile-status key of a working copy state."""
    if info.branch:
        return info.branch
    return "(detached)" if info.commit else ""


class AutoCompiler:
    """One thread; per workspace key, the monotonic time its compile is due."""

    def __init__(self, compile_fn: Callable[[str], None], debounce: float) -> None:
        self._compile = compile_fn
        self.debounce = debounce
        self._due: dict[str, float] = {}
        self._busy: set[str] = set()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(
                target=self._loop, name="quarry-autocompile", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def request(self, key: str) -> None:
        """A change happened: compile ``key`` once it has been quiet for ``debounce``."""
        with self._cond:
            self._due[key] = time.monotonic() + self.debounce
            self._cond.notify_all()

    def is_due(self, key: str) -> bool:
        """Whether a compile of ``key`` is waiting (requested and not yet started)."""
        with self._cond:
            return key in self._due

    def pending(self) -> bool:
        with self._cond:
            return bool(self._due or self._busy)

    def _next(self) -> str | None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                ready = [k for k, t in self._due.items() if t <= now and k not in self._busy]
                if ready:
                    key = min(ready, key=lambda k: self._due[k])
                    del self._due[key]
                    self._busy.add(key)
                    return key
                waits = [t - now for k, t in self._due.items() if k not in self._busy]
                self._cond.wait(timeout=min(waits) if waits else None)
            return None

    def _loop(self) -> None:
        while (key := self._next()) is not None:
            try:
                self._compile(key)
            except Exception:  # recorded as compile status by compile_fn; keep going
                log.exception("background compile of %s failed", key)
            finally:
                with self._cond:
                    self._busy.discard(key)
                    self._cond.notify_all()
