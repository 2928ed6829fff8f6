"""Property: under any interleaving of enqueue, kick, re-kick and completion, the
keep-alive hold count is never zero while work is queued or in flight.

The real :class:`quarry.runtime.queue.drain.Drain` runs over an injected queue and a
real :class:`Holds`. A deterministic scheduler stands in for the other threads: at
every point where the drain thread touches shared state (taking kicks, claiming,
running a task, looking at the queue, releasing a hold) Hypothesis chooses which
other actions happen first — an enqueue (with its kick), a bare re-kick (a NOTIFY,
a write request), or time passing — and the invariant is checked after each.

A deliberately naive drain (kicks while busy only set a flag; the pass releases its
hold before re-checking) is run through the same property and must be caught, so
the property can fail.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quarry.core.holds import Holds, HoldToken
from quarry.runtime.queue.drain import IDLE, RAN, Drain, Pending, Step

ACTIONS = st.lists(
    st.sampled_from(["enqueue", "enqueue_delayed", "kick", "tick", "nothing"]), max_size=3
)


class Violation(AssertionError):
    pass


@dataclass
class World:
    """The fake queue, the clock and the scheduler's budget of outside actions."""

    data: st.DataObject
    holds: Holds = field(default_factory=Holds)
    queued: list[tuple[int, float]] = field(default_factory=list)  # (id, ready_at)
    in_flight: int | None = None
    done: list[int] = field(default_factory=list)
    clock: float = 0.0
    next_id: int = 0
    budget: int = 25
    drain: Drain | None = None
    closed: bool = False  # the scenario is over: closing the drain checks nothing

    # -- the invariant, checked at every preemption point ----------------------

    def check(self, where: str) -> None:
        if (self.queued or self.in_flight is not None) and self.holds.count == 0:
            raise Violation(f"no hold at {where}: queued={self.queued} in_flight={self.in_flight}")

    def preempt(self, where: str) -> None:
        """Let the other threads run: Hypothesis picks what they do here."""
        if self.closed:
            return
        self.check(where)
        if self.budget <= 0:
            return
        for action in self.data.draw(ACTIONS, label=where):
            self.budget -= 1
            if action.startswith("enqueue"):
                delay = 2.0 if action == "enqueue_delayed" else 0.0
                self.queued.append((self.next_id, self.clock + delay))
                self.next_id += 1
                assert self.drain is not None
                self.drain.kick("enqueue")  # what an enqueuer does right after commit
            elif action == "kick":
                assert self.drain is not None
                self.drain.kick("re-kick")
            elif action == "tick":
                self.clock += 1.0
            self.check(f"{where} after {action}")

    # -- the injected queue ---------------------------------------------------

    def run_one(self) -> bool:
        self.preempt("before claim")
        ready = [item for item in self.queued if item[1] <= self.clock]
        if not ready:
            return False
        item = ready[0]
        self.queued.remove(item)
        self.in_flight = item[0]
        self.preempt("task running")  # the handler runs; others go on meanwhile
        self.done.append(item[0])
        self.in_flight = None
        self.preempt("after completion")
        return True

    def look(self) -> Pending:
        self.preempt("before double-check")
        if not self.queued:
            return Pending.nothing()
        earliest = min(ready_at for _, ready_at in self.queued)
        return Pending(eligible=earliest <= self.clock, next_at=earliest)


class PreemptingHolds(Holds):
    """Holds whose release is a preemption point too (it is, on a real thread)."""

    world: World

    def release(self, token: HoldToken) -> None:
        super().release(token)
        self.world.preempt(f"after releasing {token.reason}")


class NaiveDrain(Drain):
    """The "simplified" order the invariant forbids: one hold per pass, a kick while
    busy only sets a flag, and the hold is released before the flag is looked at."""

    def kick(self, reason: str = "drain") -> None:
        with self._lock:
            self._again = True
        self._wake.set()

    def steps(self) -> Generator[Step, None, None]:
        while True:
            with self._lock:
                again, self._again = getattr(self, "_again", False), False
            if not again:
                yield IDLE
                continue
            token = self.holds.acquire("drain")
            while self._run_one():
                yield RAN
            self.holds.release(token)


def exercise(data: st.DataObject, drain_class: type[Drain]) -> World:
    holds = PreemptingHolds()
    world = World(data, holds=holds)
    holds.world = world
    world.drain = drain_class(holds, world.run_one, world.look)
    steps = world.drain.steps()
    try:
        _schedule(world, steps)
    finally:
        world.closed = True
        steps.close()  # now, while the test runs (not when garbage collected)
    return world


def _schedule(world: World, steps: Generator[Step, None, None]) -> None:
    assert world.drain is not None
    world.preempt("start")
    for _ in range(500):
        step = next(steps)
        if step.kind == "wait":
            assert step.until is not None or world.queued
            world.clock = max(world.clock, step.until or world.clock)
            world.preempt("waiting")
        elif step is IDLE:
            world.check("idle")
            if world.budget <= 0 and not world.queued and not world.drain.has_kicks():
                break
            world.preempt("idle")
            if world.budget <= 0 and world.queued:
                world.clock += 1.0  # the poll fallback would come round


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_hold_count_never_zero_while_work_is_queued_or_in_flight(data: st.DataObject) -> None:
    world = exercise(data, Drain)
    # Liveness too: everything enqueued ran, and no hold leaked.
    assert not world.queued and world.in_flight is None
    assert sorted(world.done) == list(range(world.next_id))
    assert world.holds.count == 0


def test_the_property_catches_the_naive_order() -> None:
    @settings(max_examples=500, deadline=None, database=None, derandomize=True)
    @given(st.data())
    def naive(data: st.DataObject) -> None:
        exercise(data, NaiveDrain)

    with pytest.raises(Violation):
        naive()


def test_a_kick_holds_before_anything_looks() -> None:
    holds = Holds()
    seen: list[int] = []

    def look() -> Pending:
        seen.append(holds.count)
        return Pending.nothing()

    def run_one() -> bool:
        seen.append(holds.count)
        return False

    drain = Drain(holds, run_one, look)
    assert holds.count == 0
    drain.kick()
    assert holds.count == 1  # before the drain thread has even looked
    steps = drain.steps()
    assert next(steps) is IDLE
    assert seen == [1, 1]  # claim and double-check, both under the hold
    assert holds.count == 0


def test_a_stopping_drain_lets_go_of_kicks_no_pass_took() -> None:
    """A kick that lands while the worker is stopping is never served: the drain
    loop, closed, gives its hold back (it was left taken, keeping a Factory from
    scaling to zero after a stop, and failing the node's stop test now and then)."""
    holds = Holds()
    drain = Drain(holds, lambda: False, Pending.nothing)
    steps = drain.steps()
    assert next(steps) is IDLE and holds.count == 0
    drain.kick("scale-to-zero")
    assert holds.count == 1
    steps.close()  # what a stopping worker's loop does, before the next pass
    assert holds.count == 0
