"""The Factory as one object: working copies, their locks, compiles and draft runs.

Built once by the ide/all node (``quarry.node.roles``) and started with it:
at start a cloud workspace whose working copy is missing is cloned and compiled (so a
Factory with a wiped disk comes back serving the same revisions), and so is one whose
last compile a stop interrupted; every other workspace is left alone (``start``).

Every mutation of a working copy — a file write, a git command, a compile — runs
under that working copy's lock. One Factory per deployment (the platform guarantees
at most one) and one lock per working copy inside it make "check the expected hash,
then rename" and "compile what is on disk" race-free without any database lease.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from quarry.catalog.reader import Catalog
from quarry.core.errors import CompileFailed, NotFound, Problem, QuarryError
from quarry.core.holds import Holds, HoldToken
from quarry.core.metrics import FACTORY_START_REMAINING
from quarry.factory import files, git
from quarry.factory import workspaces as fw
from quarry.factory.autocompile import AutoCompiler, promotion_for, status_branch
from quarry.factory.compiler import COMPILER_VERSION, CompileResult, compile_workspace
from quarry.factory.gitinfo import read_git_info
from quarry.factory.isolation import CompileLimits
from quarry.factory.partial import compile_for_run, draft_target
from quarry.factory.statcache import cache_path
from quarry.runtime.queue import TaskQueue
from quarry.runtime.runs.executor import RunExecutor, RunLimits
from quarry.runtime.runs.service import RunRequest, create_run
from quarry.runtime.services import Services
from quarry.store import factory_tables as ft
from quarry.store.db import Engine
from quarry.store.objects import ObjectStore
from quarry.store.runs import RunRow
from quarry.store.workspaces import WorkspaceRow

log = logging.getLogger(__name__)


class Factory:
    def __init__(self, svc: Services) -> None:
        """Built by the composition root (``quarry.node.roles``), which also decides
        its folders (``svc.paths``)."""
        settings = svc.settings
        self.settings = settings
        self.svc = svc
        # Keep-alive holds (docs/scale-to-zero.md): a requested compile holds from the
        # request until it is done, like start-up cloning and draft runs.
        self.holds: Holds = svc.holds
        self._compile_holds: dict[str, HoldToken] = {}
        self.engine: Engine = svc.engine
        self.store: ObjectStore = svc.store
        self.catalog: Catalog = svc.catalog
        self.queue: TaskQueue = svc.queue
        self.data_dir: Path = svc.paths.data_dir
        self.workspaces_dir: Path = svc.paths.workspaces_dir
        self.cache_dir: Path = svc.paths.cache_dir
        self.runner = git.GitRunner(
            timeout=settings.git_timeout_seconds,
            credentials={h: s.get_secret_value() for h, s in settings.git_credentials.items()},
        )
        self.limits = files.Limits(settings.file_max_bytes, settings.dataset_file_max_bytes)
        self.compile_limits = CompileLimits.from_settings(settings)
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self.auto = AutoCompiler(self._compile_key, settings.compile_debounce_seconds)
        self._runs = ThreadPoolExecutor(max_workers=2, thread_name_prefix="quarry-draft-run")
        self._executor: RunExecutor | None = None
        self.ready = threading.Event()  # the start-up clone-and-compile pass is done

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        """Resume what a stop interrupted, on a background thread under a keep-alive
        hold; the process is ready at once (``/readyz`` never waits for it).

        The pass is bounded by what needs work, not by the workspace count (a restart
        with 2,000 workspaces compiled every one of them, ~16 ms each at best, while
        IDE requests shared the CPU with it: docs/capacity.md). It compiles only

        * workspaces whose last compile did not finish (``compile_status`` missing,
          ``pending`` or ``compiling``: an edit's debounced compile or a registration
          the stop cut short), found by one query;
        * workspaces whose current revision an older compiler made
          (``COMPILER_VERSION``), once after such an upgrade;
        * workspaces whose working copy is missing (a new or wiped volume: one
          ``stat`` each), cloned again and compiled, so a wiped Factory serves the
          same revisions without waiting for each editor's first request.

        Every other workspace is left alone: its revisions are in the database and its
        working copy on disk, unchanged since its last finished compile. An IDE request
        that arrives first clones on demand, under the same per-workspace lock. A
        workspace that fails is logged and skipped; ``ready`` is set when the pass is
        done."""
        token = self.holds.acquire("factory start")
        self.auto.start()
        thread = threading.Thread(
            target=self._start_all, args=(token,), name="quarry-factory-start", daemon=True
        )
        thread.start()

    def start_todo(self) -> list[tuple[str, str]]:
        """(tenant, name) of what the start-up pass works on, interrupted compiles first."""
        with self.engine.connect() as conn:
            resume = ft.workspaces_to_resume(conn, COMPILER_VERSION)
            every = ft.git_workspaces(conn)
        todo = dict.fromkeys(resume)
        for tenant, name in every:
            if (tenant, name) not in todo and not fw.has_working_copy(
                self.workspaces_dir, tenant, name
            ):
                todo[(tenant, name)] = None
        return list(todo)

    def _start_all(self, token: HoldToken) -> None:
        started = time.monotonic()
        names: list[tuple[str, str]] = []
        try:
            names = self.start_todo()
            FACTORY_START_REMAINING.set(len(names))
            for tenant, name in names:
                try:
                    self.compile_now(self.workspace(tenant, name))
                except NotFound:
                    pass  # unregistered meanwhile
                except QuarryError as exc:
                    log.error("start-up compile of %s/%s failed: %s", tenant, name, exc.message)
                except Exception:
                    log.exception("start-up compile of %s/%s failed", tenant, name)
                FACTORY_START_REMAINING.dec()
        except Exception:
            log.exception("the Factory's start-up pass failed")
        finally:
            FACTORY_START_REMAINING.set(0)
            self.holds.release(token)
            self.ready.set()
            log.info(
                "start-up pass: %d workspace(s) resumed or re-cloned in %.1f s",
                len(names),
                time.monotonic() - started,
            )

    def stop(self) -> None:
        self.auto.stop()
        self._runs.shutdown(wait=True, cancel_futures=True)

    # -- working copies -------------------------------------------------------------
    def workspace(self, tenant_id: str, name: str) -> WorkspaceRow:
        return self.catalog.workspace(tenant_id, name, fresh=True)

    def lock(self, workspace: WorkspaceRow) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(workspace.id, threading.RLock())

    def root(self, workspace: WorkspaceRow) -> Path:
        """The working copy's folder (cloned first if it is a missing cloud one)."""
        if workspace.source_kind == "git":
            with self.lock(workspace):
                root, _ = fw.ensure_clone(self.engine, self.runner, self.workspaces_dir, workspace)
            return root
        root = Path(workspace.source)
        if not root.is_dir():
            raise NotFound(
                f"the folder of workspace {workspace.name!r} is missing on this Factory",
                workspace=workspace.name,
            )
        return root

    def git(self, workspace: WorkspaceRow) -> git.WorkingCopyGit:
        wc = git.WorkingCopyGit(self.root(workspace), self.runner)
        if not wc.is_repository():
            raise git.GitError(f"workspace {workspace.name!r} is not a git repository")
        return wc

    # -- compiling ------------------------------------------------------------------
    def request_compile(self, workspace: WorkspaceRow) -> None:
        """A change: record ``pending`` and let the background compiler run it."""
        root = self.root(workspace)
        branch = git.head_branch(root)
        if branch is None:
            branch = status_branch(read_git_info(root))
        with self.engine.begin() as conn:
            ft.mark_requested(conn, workspace.id, branch)
        key = f"{workspace.tenant_id}/{workspace.name}"
        with self._locks_guard:
            if key not in self._compile_holds:
                self._compile_holds[key] = self.holds.acquire("compile")
        self.auto.start()  # idempotent: also when the app runs without its lifespan
        self.auto.request(key)

    def _compile_key(self, key: str) -> None:
        with self._locks_guard:
            token = self._compile_holds.pop(key, None) or self.holds.acquire("compile")
        try:
            tenant, name = key.split("/", 1)
            try:
                workspace = self.workspace(tenant, name)
            except NotFound:
                return  # removed meanwhile
            with contextlib.suppress(QuarryError):  # the outcome is in compile_status
                self.compile_now(workspace)
        finally:
            with self._locks_guard:  # requested again meanwhile: hold on for that one
                if self.auto.is_due(key) and key not in self._compile_holds:
                    self._compile_holds[key] = self.holds.acquire("compile")
            self.holds.release(token)

    def compile_now(
        self, workspace: WorkspaceRow, *, draft: bool = False, record: bool = True
    ) -> CompileResult:
        """Compile the working copy as it is now; records the outcome in
        ``compile_status`` (unless ``record`` is off). ``draft`` forbids promotion."""
        with self.lock(workspace):
            root = self.root(workspace)
            workspace = self.workspace(workspace.tenant_id, workspace.name)
            info = read_git_info(root)
            promote = not draft and promotion_for(workspace, info)
            branch = status_branch(info)
            if record:
                with self.engine.begin() as conn:
                    ft.mark_started(conn, workspace.id, branch)
            try:
                result = compile_workspace(
                    self.engine,
                    self.store,
                    workspace,
                    root,
                    promote=promote,
                    stat_cache=cache_path(self.data_dir, workspace.id),
                    limits=self.compile_limits,
                )
            except QuarryError as exc:
                if record:
                    problems = exc.problems if isinstance(exc, CompileFailed) else []
                    with self.engine.begin() as conn:
                        ft.mark_finished(
                            conn,
                            workspace.id,
                            branch,
                            revision_id=None,
                            promoted=False,
                            draft=not promote,
                            git_commit=info.commit,
                            error=exc.message,
                            problems=[p.__dict__ for p in problems],
                        )
                raise
            with self.engine.begin() as conn:
                if promote and info.commit and not info.dirty:
                    ft.record_provenance(
                        conn, workspace.id, result.revision_id, info.commit, info.branch
                    )
                if record:
                    ft.mark_finished(
                        conn,
                        workspace.id,
                        branch,
                        revision_id=result.revision_id,
                        promoted=promote,
                        draft=not promote,
                        git_commit=info.commit,
                    )
            self.catalog.forget_workspace(workspace.tenant_id, workspace.name)
            return result

    # -- draft runs -----------------------------------------------------------------
    def start_draft_run(
        self,
        workspace: WorkspaceRow,
        kind: str,
        name: str,
        variables: dict[str, Any],
        request_id: str | None,
        warnings: list[Problem] | None = None,
    ) -> RunRow:
        """Compile the working copy as it is (uncommitted edits included) to a draft
        revision and execute the run here, on the Factory, on a background thread.
        Its events and results go to the database and the object store like any
        run's, so every replica can follow it. A broken file the target does not
        need does not stop it (issue #15): the draft revision then leaves the broken
        files out, and their problems are added to ``warnings``."""
        try:
            result = self.compile_now(workspace, draft=True, record=False)
        except CompileFailed as failed:
            with self.lock(workspace):
                root = self.root(workspace)
                target = draft_target(root, kind, name)
                if target is None:
                    raise
                partial = compile_for_run(
                    self.engine,
                    self.store,
                    workspace,
                    root,
                    target,
                    failed,
                    limits=self.compile_limits,
                )
            result = partial.result
            if warnings is not None:
                warnings.extend(partial.elsewhere)
        request = RunRequest(
            kind,
            name,
            variables,
            revision=result.revision_id,
            origin="factory",
            request_id=request_id,
            draft=True,
        )
        run = create_run(self.svc, workspace, request, enqueue=False)
        token = self.holds.acquire("draft run")
        try:
            self._runs.submit(self._execute, run, token)
        except BaseException:
            self.holds.release(token)
            raise
        return run

    def _execute(self, run: RunRow, token: HoldToken) -> None:
        try:
            self._execute_run(run)
        finally:
            self.holds.release(token)

    def _execute_run(self, run: RunRow) -> None:
        if self._executor is None:
            self._executor = RunExecutor(
                self.svc,
                self.cache_dir,
                limits=RunLimits.from_settings(self.settings),
            )
        try:
            self._executor.execute(run, None)
        except Exception:
            log.exception("draft run %s failed outside the run", run.id)
