"""The hold counter: counts by reason, refuses a double release, wakes waiters."""

from __future__ import annotations

import threading

import pytest

from quarry.core.holds import Holds
from quarry.fleet.keepalive import self_keepalive


def test_counts_by_reason_and_releases() -> None:
    holds = Holds()
    seen: list[int] = []
    unsubscribe = holds.subscribe(seen.append)
    with holds.hold("compile"):
        token = holds.acquire("run")
        other = holds.acquire("run")
        assert holds.count == 3
        assert holds.by_reason() == {"compile": 1, "run": 2}
        holds.release(token)
        holds.release(other)
    assert holds.count == 0
    assert holds.by_reason() == {}
    assert seen == [0, 1, 2, 3, 2, 1, 0]
    unsubscribe()
    with holds.hold("x"):
        pass
    assert seen[-1] == 0 and len(seen) == 7
    assert holds.watchers == 0


def test_a_double_release_is_an_error() -> None:
    holds = Holds()
    token = holds.acquire("drain")
    holds.release(token)
    with pytest.raises(RuntimeError, match="released twice"):
        holds.release(token)
    assert holds.count == 0


def test_hold_released_when_the_block_raises() -> None:
    holds = Holds()
    with pytest.raises(ValueError, match="boom"), holds.hold("compile"):
        raise ValueError("boom")
    assert holds.count == 0


def test_wait_wakes_on_change_from_another_thread() -> None:
    holds = Holds()
    token = holds.acquire("run")
    released = threading.Thread(target=holds.release, args=(token,))
    released.start()
    assert holds.wait(lambda count: count == 0, timeout=10)
    released.join()
    assert not holds.wait(lambda count: count > 0, timeout=0.01)


def test_keepalive_is_dormant_without_self_url_or_when_always_on() -> None:
    holds = Holds()
    kwargs = {"hold_seconds": 45.0, "max_hold_seconds": 60.0}
    assert self_keepalive(holds, None, min_replicas=0, **kwargs) is None
    assert self_keepalive(holds, "", min_replicas=0, **kwargs) is None
    assert self_keepalive(holds, "http://factory", min_replicas=1, **kwargs) is None
    live = self_keepalive(
        holds, "http://factory/", min_replicas=0, hold_seconds=90.0, max_hold_seconds=60.0
    )
    assert live is not None
    assert live.url == "http://factory/keepalive"
    assert live.hold_seconds == 60.0  # never longer than the server grants
    assert live.renew_before == 10.0
    live.stop()
