"""The admission decision itself: classes, the per-tenant share, release."""

from __future__ import annotations

import pytest

from quarry.fleet.admission import CHEAP, EXPENSIVE, STREAM, Admission, Limits, classify


@pytest.mark.parametrize(
    ("method", "path", "cls"),
    [
        ("POST", "/api/v1/workspaces/shop/runs", EXPENSIVE),
        ("POST", "/api/v1/workspaces/shop/draft-runs", EXPENSIVE),
        ("POST", "/api/v1/workspaces/shop/compile", EXPENSIVE),
        ("POST", "/api/v1/workspaces/shop/schedules/nightly/trigger", EXPENSIVE),
        ("POST", "/api/v1/workspaces/shop/schedules/nightly/pause", CHEAP),
        ("POST", "/api/v1/workspaces/shop/agents/analyst/chat", EXPENSIVE),
        ("POST", "/api/v1/workspaces/shop/views/orders/query", EXPENSIVE),
        ("GET", "/api/v1/workspaces/shop/runs", CHEAP),
        ("GET", "/api/v1/workspaces/shop/compile/status", CHEAP),
        ("POST", "/api/v1/runs/abc/cancel", CHEAP),
        ("GET", "/api/v1/runs/abc/events", STREAM),
    ],
)
def test_classify(method: str, path: str, cls: str) -> None:
    assert classify(method, path) == cls


def test_a_tenant_holds_at_most_its_share_and_others_get_the_rest() -> None:
    gate = Admission(Limits(expensive=10, tenant_share=0.5))
    assert [gate.try_acquire(EXPENSIVE, "a") for _ in range(5)] == [None] * 5
    assert gate.try_acquire(EXPENSIVE, "a") == "expensive_tenant"
    assert [gate.try_acquire(EXPENSIVE, "b") for _ in range(5)] == [None] * 5
    assert gate.try_acquire(EXPENSIVE, "c") == "expensive_global"
    gate.release(EXPENSIVE, "a")
    assert gate.in_flight(EXPENSIVE) == 9 and gate.in_flight(EXPENSIVE, "a") == 4
    assert gate.try_acquire(EXPENSIVE, "c") is None
    assert gate.try_acquire(CHEAP, "a") is None  # classes are independent


def test_a_tiny_ceiling_still_admits_one_per_tenant() -> None:
    gate = Admission(Limits(expensive=1, tenant_share=0.1))
    assert gate.try_acquire(EXPENSIVE, "a") is None
    assert gate.try_acquire(EXPENSIVE, "b") == "expensive_global"
    gate.release(EXPENSIVE, "a")
    assert gate.in_flight(EXPENSIVE) == 0 and gate.in_flight(EXPENSIVE, "a") == 0
