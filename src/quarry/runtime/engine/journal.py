"""The durability hook: a checkpoint per step, replayed instead of executed again."""

from __future__ import annotations

import threading
from typing import Protocol

from quarry.runtime.engine.results import StepResult


class StepJournal(Protocol):
    """Where a run's steps are recorded and its finished steps checkpointed (the
    ``run_steps`` table in production).

    ``get`` answering a result means the step finished in an earlier attempt: the
    runner replays it and does not execute it. Otherwise the runner calls
    ``started`` before executing the step, then ``put`` once it has finished (effects
    included) or ``failed`` with the error's message. The runner calls these itself,
    so a journal never has to read the run's events to know a step's state. All may
    be called from several threads at once (loop iterations).
    """

    def get(self, step_key: str) -> StepResult | None: ...

    def started(self, step_key: str, name: str) -> None: ...

    def failed(self, step_key: str, name: str, error: str) -> None: ...

    def put(self, step_key: str, result: StepResult) -> None: ...


class MemoryJournal:
    """In-memory journal; stores serialised bytes so every result proves serialisable."""

    def __init__(self, entries: dict[str, bytes] | None = None) -> None:
        self.entries: dict[str, bytes] = dict(entries or {})
        self._lock = threading.Lock()

    def get(self, step_key: str) -> StepResult | None:
        with self._lock:
            data = self.entries.get(step_key)
        return None if data is None else StepResult.from_bytes(data)

    def started(self, step_key: str, name: str) -> None:
        return None

    def failed(self, step_key: str, name: str, error: str) -> None:
        return None

    def put(self, step_key: str, result: StepResult) -> None:
        data = result.to_bytes()
        with self._lock:
            self.entries[step_key] = data


class NoJournal:
    """No checkpoints: every step executes."""

    def get(self, step_key: str) -> StepResult | None:
        return None

    def started(self, step_key: str, name: str) -> None:
        return None

    def failed(self, step_key: str, name: str, error: str) -> None:
        return None

    def put(self, step_key: str, result: StepResult) -> None:
        return None
