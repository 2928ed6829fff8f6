"""SIGTERM/SIGINT stop a worker without taking a lock in the signal handler."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from quarry.runtime.queue import TaskQueue
from quarry.runtime.queue.worker import Worker


@pytest.fixture
def restored_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restored_signals")
def test_the_handler_returns_while_the_main_thread_holds_an_event_lock(
    queue: TaskQueue,
) -> None:
    # A Python signal handler runs in the main thread between two bytecodes: maybe
    # inside ``Event.wait`` or ``Event.clear``, which hold the Event's plain lock. A
    # handler that sets that Event would then wait forever on a lock its own thread
    # holds. Here the lock is held while the handler runs on another thread: a
    # handler that takes it cannot return.
    worker = Worker(queue, lambda t: None, reap_interval=None, listen=False)
    worker.install_signal_handlers()
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    returned = threading.Event()

    def deliver() -> None:
        handler(signal.SIGTERM, None)
        returned.set()

    with worker._wake._cond:  # as the main thread does inside Event.wait()
        threading.Thread(target=deliver, daemon=True).start()
        assert returned.wait(5), "the signal handler blocked on the worker's Event lock"
    # Once the lock is free, the stop request goes through.
    assert worker._stop.wait(5)
    assert worker.stopping


@pytest.mark.usefixtures("restored_signals")
def test_sigint_stops_a_running_worker(queue: TaskQueue) -> None:
    worker = Worker(queue, lambda t: None, reap_interval=None, listen=False, poll_interval=0.01)
    worker.install_signal_handlers()
    handler = signal.getsignal(signal.SIGINT)
    assert callable(handler)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    handler(signal.SIGINT, None)
    thread.join(20)
    assert not thread.is_alive()
