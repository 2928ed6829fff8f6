"""Parsing definition files in a child process, so a poison file fails only itself.

A definition file is hostile input: the YAML guards (:class:`YamlLimits`) stop the
known bombs, and this module contains the unknown ones. Files are parsed by a
long-lived compile process (:mod:`quarry.factory.compile_child`) that runs with an
address-space cap, a stack cap and, per file, a time limit enforced by its parent.
When a file crashes it, exhausts its memory or its time, the process is replaced,
the file gets a problem naming the limit, and the file's hash is remembered: the
same bytes are not parsed again until they change (no crash-and-retry loop), while
the other files of the compile go on in the new process.

The process is started on first use and kept (a few are kept idle, one per
concurrent compile), so a recompile in the Factory pays a pipe round trip per
changed file, not an interpreter start; a one-shot ``quarry compile`` starts one.
``isolation="inline"`` parses in the calling process (same guards, no containment).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import Counter
from pydantic import BaseModel

from quarry.core.errors import CompileFailed, Problem, QuarryError
from quarry.core.hashing import canonical_json, sha256_hex
from quarry.core.metrics import REGISTRY
from quarry.definitions.kinds import Kind
from quarry.definitions.parse import YamlLimits, load_model, parse_definition
from quarry.definitions.references import Ref
from quarry.definitions.task_positions import positions_json
from quarry.factory.files import Limits

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
MAX_IDLE = 2  # idle compile processes kept per set of limits
REMEMBERED = 1024  # failing file hashes remembered
MAX_REPLY = 64 << 20  # the largest reply read from the compile process

ISOLATED_FAILURES = Counter(
    "quarry_compile_isolated_failures_total",
    "Definition files that crashed, or ran out of memory or time in, the compile process.",
    ["reason"],
    registry=REGISTRY,
)


@dataclass(frozen=True)
class CompileLimits:
    """What one compile may read and spend (settings of the same names, see
    docs/configuration.md). ``file_bytes`` caps every file outside dataset folders,
    ``dataset_file_bytes`` the files under them — the file API's caps, applied to
    whatever is on disk however it got there."""

    file_bytes: int = 2_000_000
    dataset_file_bytes: int = 50_000_000
    yaml_max_depth: int = 100
    yaml_max_alias_nodes: int = 10_000
    isolation: Literal["process", "inline"] = "process"
    memory_bytes: int = 1 << 30
    stack_bytes: int = 8 << 20
    file_timeout_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> CompileLimits:
        return cls(
            file_bytes=settings.file_max_bytes,
            dataset_file_bytes=settings.dataset_file_max_bytes,
            yaml_max_depth=settings.yaml_max_depth,
            yaml_max_alias_nodes=settings.yaml_max_alias_nodes,
            isolation=settings.compile_isolation,
            memory_bytes=settings.compile_memory_bytes,
            stack_bytes=settings.compile_stack_bytes,
            file_timeout_seconds=settings.compile_file_timeout_seconds,
        )

    @property
    def file_caps(self) -> Limits:
        return Limits(text_bytes=self.file_bytes, dataset_bytes=self.dataset_file_bytes)

    @property
    def yaml(self) -> YamlLimits:
        return YamlLimits(max_depth=self.yaml_max_depth, max_alias_nodes=self.yaml_max_alias_nodes)


@dataclass(frozen=True)
class ParsedFile:
    """A definition parsed (in the compile process or inline): what the compiler
    stores — body and refs as canonical JSON text — and the refs as objects.
    ``model`` is rebuilt from the body only when asked for (config.yml's is)."""

    kind: Kind
    name: str
    path: str
    body_json: str
    refs_json: str
    refs: tuple[Ref, ...]
    warnings: tuple[Problem, ...] = ()
    # the tasks' own positions as stored (quarry.definitions.task_positions), "" if none
    positions_json: str = ""

    @classmethod
    def from_reply(cls, path: str, data: dict[str, Any]) -> ParsedFile:
        refs = tuple(Ref.from_json(r) for r in json.loads(data["refs"]))
        warnings = tuple(Problem(**w) for w in data.get("warnings", ()))
        kind, name = Kind(data["kind"]), str(data["name"])
        positions = str(data.get("positions", ""))
        return cls(kind, name, path, data["body"], data["refs"], refs, warnings, positions)

    @property
    def body(self) -> dict[str, Any]:
        body = json.loads(self.body_json)
        assert isinstance(body, dict)
        return body

    @property
    def model(self) -> BaseModel:
        return load_model(self.kind, self.body)


Outcome = ParsedFile | list[Problem]


def parse_inline(path: str, data: bytes, limits: CompileLimits) -> Outcome:
    """Parse in this process: what the compile process does for each request."""
    try:
        parsed = parse_definition(path, data, limits.yaml)
    except CompileFailed as failed:
        return list(failed.problems)
    body = canonical_json(parsed.body).decode("utf-8")
    refs = canonical_json([r.to_json() for r in parsed.refs]).decode("utf-8")
    warnings = tuple(getattr(parsed, "warnings", ()))
    positions = positions_json(parsed.tasks)
    return ParsedFile(parsed.kind, parsed.name, path, body, refs, parsed.refs, warnings, positions)


class _Remembered:
    """File hashes that failed in the compile process, with the problem to repeat.
    Keyed with the limits too: raising a limit gives the file another try."""

    def __init__(self) -> None:
        self._messages: OrderedDict[tuple[str, CompileLimits], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str, limits: CompileLimits) -> str | None:
        with self._lock:
            return self._messages.get((digest, limits))

    def add(self, digest: str, limits: CompileLimits, message: str) -> None:
        with self._lock:
            self._messages[(digest, limits)] = message
            while len(self._messages) > REMEMBERED:
                self._messages.popitem(last=False)


REMEMBERED_FAILURES = _Remembered()


class _ChildDied(Exception):
    """The compile process ended (or was ended) while parsing a file."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class CompileProcess:
    """One compile process and the pipes to it."""

    def __init__(self, limits: CompileLimits) -> None:
        self.limits = limits
        arguments = json.dumps(
            {
                "memory_bytes": limits.memory_bytes,
                "stack_bytes": limits.stack_bytes,
                "yaml_max_depth": limits.yaml_max_depth,
                "yaml_max_alias_nodes": limits.yaml_max_alias_nodes,
            }
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "quarry.factory.compile_child", arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_env(),
            cwd="/",
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._out = self.process.stdin
        self._in = self.process.stdout.fileno()
        self._buffer = bytearray()
        self.ready = False

    def wait_ready(self, timeout: float = 60.0) -> None:
        if self.ready:
            return
        try:
            message = self._read_message(time.monotonic() + timeout)
        except _ChildDied as died:
            raise QuarryError(f"the compile process could not start: {died.message}") from None
        if message != {"ready": True}:
            raise QuarryError("the compile process could not start: unexpected greeting")
        self.ready = True

    def parse_many(self, files: list[tuple[str, bytes]]) -> Iterator[tuple[int, dict[str, Any]]]:
        """Send every file (from a writer thread: replies flow while requests do) and
        yield ``(index, reply)`` in order; raises :class:`_ChildDied` naming the file
        in progress as ``index`` of the last reply + 1."""
        self.wait_ready()
        writer = threading.Thread(target=self._write_all, args=(files,), daemon=True)
        writer.start()
        answered = 0
        try:
            for index in range(len(files)):
                deadline = time.monotonic() + self.limits.file_timeout_seconds
                message = self._read_message(deadline)
                answered += 1
                yield index, message
        finally:
            if answered < len(files):  # abandoned or failed: replies would be out of step
                self.close()
            writer.join(timeout=5)

    def _write_all(self, files: list[tuple[str, bytes]]) -> None:
        """Requests go out in writes of about a megabyte (not two per file: the reader
        thread shares the interpreter with this one)."""
        pending = bytearray()
        try:
            for path, data in files:
                raw = path.encode("utf-8")
                pending += _LENGTH.pack(len(raw)) + raw + _LENGTH.pack(len(data)) + data
                if len(pending) >= 1 << 20:
                    self._out.write(pending)
                    self._out.flush()
                    pending.clear()
            self._out.write(pending)
            self._out.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the process died; the reader reports it

    def _read_message(self, deadline: float) -> dict[str, Any]:
        header = self._read(4, deadline)
        size = _LENGTH.unpack(header)[0]
        if size > MAX_REPLY:
            raise self._protocol_error()
        payload = self._read(size, deadline)
        try:
            message = json.loads(payload)
        except ValueError:
            raise self._protocol_error() from None
        if not isinstance(message, dict):
            raise self._protocol_error()
        if message.get("fatal") == "memory":
            self.close()
            raise _ChildDied("memory", self._memory_message())
        return message

    def _read(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._in], [], [], max(left, 0))
            if not ready:
                self.close()
                limit = self.limits.file_timeout_seconds
                raise _ChildDied(
                    "timeout",
                    f"reading this file took longer than {limit:g} s "
                    "(limit compile_file_timeout_seconds)",
                )
            chunk = os.read(self._in, max(65536, size - len(self._buffer)))
            if not chunk:
                raise self._died()
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _protocol_error(self) -> _ChildDied:
        self.close()
        return _ChildDied("protocol", "the compile process sent an unreadable reply")

    def _died(self) -> _ChildDied:
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # closed its output but lives on
            self.close()
            return _ChildDied("crash", "the compile process stopped answering")
        self.close()
        if code < 0:
            name = signal.Signals(-code).name
            message = f"the compile process crashed ({name}) reading this file"
            if name in {"SIGABRT", "SIGKILL"} and self.limits.memory_bytes:
                # native code (libyaml, pydantic-core) aborts when an allocation fails
                message += f", likely out of memory ({self._memory_message()})"
            return _ChildDied("crash", message)
        return _ChildDied("crash", f"the compile process exited ({code}) reading this file")

    def _memory_message(self) -> str:
        return (
            f"reading this file needs more than {self.limits.memory_bytes} bytes of memory "
            "(limit compile_memory_bytes)"
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _child_env() -> dict[str, str]:
    """The compile process gets no secrets: nothing but what Python needs to start."""
    keep = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")
    # PYTHONHASHSEED is not passed on: string hashing stays randomised, so crafted
    # mapping keys cannot be chosen to collide.
    return {name: os.environ[name] for name in keep if name in os.environ}


class _Pool:
    """Idle compile processes by limits; a compile takes one (or starts one)."""

    def __init__(self) -> None:
        self._idle: dict[CompileLimits, list[CompileProcess]] = {}
        self._lock = threading.Lock()

    def take_idle(self, limits: CompileLimits) -> CompileProcess | None:
        """An idle (or prewarmed) process for ``limits``, or None: none is started."""
        with self._lock:
            idle = self._idle.get(limits, [])
            while idle:
                process = idle.pop()
                if process.alive:
                    return process
                process.close()
        return None

    def give_back(self, process: CompileProcess) -> None:
        if not process.alive:
            process.close()
            return
        with self._lock:
            idle = self._idle.setdefault(process.limits, [])
            if len(idle) < MAX_IDLE:
                idle.append(process)
                return
        process.close()

    def close_all(self) -> None:
        with self._lock:
            processes = [p for idle in self._idle.values() for p in idle]
            self._idle.clear()
        for process in processes:
            process.close()


POOL = _Pool()
# Idle processes end with the interpreter, not after it: left to the garbage collector
# at exit, each was a "subprocess is still running" warning and two unclosed pipes.
atexit.register(POOL.close_all)


def prewarm(limits: CompileLimits) -> None:
    """Start a compile process now, into the pool, so its start (about half a second
    of imports) overlaps whatever the caller does before compiling."""
    if limits.isolation == "process":
        POOL.give_back(CompileProcess(limits))


class Parser:
    """Parses the definition files of one compile, under ``limits``.

    Made at the start of a compile: with process isolation an idle (or prewarmed,
    :func:`prewarm`) compile process is taken then; none is started until a file
    needs parsing, so a compile that reuses every parse (an unchanged workspace,
    config.yml's facts from the stat cache) starts no process.
    :meth:`prefetch` sends the files a compile will parse in one batch (replies
    stream back while requests are still being written); :meth:`parse_definition`
    then answers from that batch, or asks the process for one file.
    """

    def __init__(self, limits: CompileLimits) -> None:
        self.limits = limits
        self._process: CompileProcess | None = None
        # prefetched outcomes by (path, bytes): a dict lookup compares the bytes
        # (their hash is cached on the object), no digest needed for it
        self._ready: dict[tuple[str, bytes], Outcome] = {}
        if limits.isolation == "process":
            self._process = POOL.take_idle(limits)

    def parse_definition(self, path: str, data: bytes) -> ParsedFile:
        """Like :func:`quarry.definitions.parse.parse_definition`: the parsed file,
        or ``CompileFailed`` with its problems."""
        outcome = self._ready.pop((path, data), None)
        if outcome is None:
            outcome = dict(self._parse_many([(path, data)]))[path]
        if isinstance(outcome, list):
            raise CompileFailed(problems=sorted(set(outcome)))
        return outcome

    def prefetch(self, files: Iterable[tuple[str, bytes]]) -> None:
        items = list(files)
        contents = dict(items)
        for path, outcome in self._parse_many(items):
            self._ready[(path, contents[path])] = outcome

    def _parse_many(self, files: list[tuple[str, bytes]]) -> Iterator[tuple[str, Outcome]]:
        """``(path, outcome)`` for each file."""
        if self.limits.isolation == "inline":
            # Failures are remembered only from the compile process, under limits
            # that say isolation="process": none is ever found for these limits.
            for path, data in files:
                yield path, parse_inline(path, data, self.limits)
            return
        pending: list[tuple[str, bytes, str]] = []
        for path, data in files:
            digest = sha256_hex(data)
            remembered = REMEMBERED_FAILURES.get(digest, self.limits)
            if remembered is not None:
                yield path, [Problem(path, 1, 1, remembered)]
            else:
                pending.append((path, data, digest))
        while pending:
            done = yield from self._parse_isolated(pending)
            pending = pending[done:]

    def _parse_isolated(
        self, files: list[tuple[str, bytes, str]]
    ) -> Generator[tuple[str, Outcome], None, int]:
        """Parse ``files`` in the compile process; returns how many were answered
        (all, or up to and including the one that took the process down)."""
        process = self._process_for()
        answered = 0
        try:
            for index, reply in process.parse_many([(p, d) for p, d, _ in files]):
                answered = index + 1
                yield files[index][0], _outcome(files[index][0], reply)
        except _ChildDied as died:
            path, _data, digest = files[answered]
            ISOLATED_FAILURES.labels(died.reason).inc()
            REMEMBERED_FAILURES.add(digest, self.limits, died.message)
            log.warning(
                "compile process failed on %s (%s): %s; these bytes are not parsed again "
                "until the file changes",
                path,
                died.reason,
                died.message,
            )
            self._process = None
            yield path, [Problem(path, 1, 1, died.message)]
            return answered + 1
        return answered

    def _process_for(self) -> CompileProcess:
        if self._process is None or not self._process.alive:
            if self._process is not None:
                self._process.close()
            self._process = CompileProcess(self.limits)
        return self._process

    def close(self) -> None:
        """Return the compile process to the pool (a healthy one is reused)."""
        self._ready.clear()
        if self._process is not None:
            POOL.give_back(self._process)
            self._process = None

    def __enter__(self) -> Parser:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _outcome(path: str, reply: dict[str, Any]) -> Outcome:
    if "ok" in reply:
        return ParsedFile.from_reply(path, reply["ok"])
    if "problems" in reply:
        return [Problem(**p) for p in reply["problems"]]
    if reply.get("fatal") == "recursion":
        return [Problem(path, 1, 1, "the file nests too deeply to be read")]
    detail = reply.get("error", "unknown failure")
    log.error("compile process failed on %s: %s", path, detail)
    return [Problem(path, 1, 1, f"the file could not be read (internal error: {detail})")]
