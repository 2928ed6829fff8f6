"""A thread's history as the model sees it, and run events as the thread stream's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from quarry.agents.consistency import consistent
from quarry.agents.providers.base import Message, ToolCall
from quarry.agents.threads import history_before, thread_event
from quarry.store.threads import MessageRow

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def _message(seq: int, role: str, content: str, status: str, parts: Any = None) -> MessageRow:
    return MessageRow(
        f"m{seq}", "t", "acme", seq, role, content, status, None, parts or {}, 0, 0, NOW, None
    )


def test_history_keeps_answered_turns_and_skips_failed_ones() -> None:
    call = {"id": "c1", "name": "execute_sql", "arguments": '{"sql": "SELECT 1"}'}
    answered = {
        "history": [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "n\n1", "tool_call_id": "c1"},
            {"role": "assistant", "content": "One."},
        ]
    }
    rows = [
        _message(0, "user", "How many?", "sent"),
        _message(1, "assistant", "One.", "answered", answered),
        _message(2, "user", "Then fail", "sent"),
        _message(3, "assistant", "", "pending"),  # its run failed: not history
        _message(4, "user", "And now?", "sent"),
        _message(5, "assistant", "", "pending"),  # the turn being answered
    ]
    assert history_before(rows, rows[5]) == [
        Message("user", "How many?"),
        Message("assistant", "", (ToolCall("c1", "execute_sql", '{"sql": "SELECT 1"}'),)),
        Message("tool", "n\n1", tool_call_id="c1"),
        Message("assistant", "One."),
    ]
    assert history_before(rows, rows[1]) == []


def test_run_events_become_thread_events() -> None:
    assert thread_event({"type": "agent.text", "text": "Hi"}) == ("text", {"text": "Hi"})
    assert thread_event({"type": "run.resumed", "attempt": 2}) == (
        "started",
        {"attempt": 2, "resumed": True},
    )
    failed = {"type": "run.failed", "error": {"error": "model_error", "message": "boom"}}
    assert thread_event(failed) == (
        "error",
        {"message": "boom", "error": {"error": "model_error", "message": "boom"}},
    )
    assert thread_event({"type": "step.started", "step": "turn"}) is None
    assert thread_event({"type": "agent.done", "status": "answered"}) is None


def test_the_judge_verdict_is_its_last_answer_line() -> None:
    assert consistent("Step 1...\nAnswer: A")
    assert not consistent("Answer: A would be wrong.\nAnswer: B")
    assert not consistent("I cannot decide.")
    assert consistent("**Answer: A**")
