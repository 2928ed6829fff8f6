"""Consistency: the same question asked N times, the answer most runs agree with
picked by a judge model (an ``agent`` task's ``consistency_run``, as Oxy does).

Every pair of answers goes to the judge with the consistency prompt (the task's
``consistency_prompt``, else :data:`CONSISTENCY_PROMPT`; its names are
``task_description``, ``submission_1`` and ``submission_2``), which ends with
``Answer: A`` (consistent) or ``Answer: B`` (not). An answer's score is the share of
the other answers consistent with it; the best scoring answer (the first, on a tie)
is the output, with its score.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from quarry.agents.providers.base import Message, ModelProvider
from quarry.runtime.engine.templating import render_text

CONSISTENCY_PROMPT = """\
Decide whether two answers to the same data question state the same facts.

Treat as CONSISTENT: differences of rounding (under 1 unit or 0.1%), wording, grammar,
formatting (1000 vs 1,000, date formats), and one answer giving more detail than the
other without contradicting it. Treat as INCONSISTENT only: different categorical
facts, materially different numbers (more than 10%), contradictory statements or
incompatible conclusions.

[Question]: {{ task_description }}
[Submission 1]: {{ submission_1 }}
[Submission 2]: {{ submission_2 }}

List the differences, decide for each, then end with exactly one line:
Answer: A   (the submissions are consistent)
Answer: B   (they are not)"""

_VERDICT = re.compile(r"Answer:\s*\**\s*([AB])\b")

Judge = Callable[[int, int, str], Awaitable[str]]
"""(i, j, judge prompt) -> the judge's text; the indices let a caller journal it."""


@dataclass(frozen=True)
class Pick:
    index: int
    answer: str
    score: float
    scores: tuple[float, ...]


def consistent(verdict: str) -> bool:
    """The judge's last ``Answer: A|B``; no verdict counts as inconsistent."""
    found = _VERDICT.findall(verdict)
    return bool(found) and found[-1] == "A"


async def pick(
    question: str, answers: Sequence[str], judge: Judge, prompt: str | None = None
) -> Pick:
    template = prompt or CONSISTENCY_PROMPT
    n = len(answers)
    agree = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            text = render_text(
                template,
                {
                    "task_description": question,
                    "submission_1": answers[i],
                    "submission_2": answers[j],
                },
            )
            if consistent(await judge(i, j, text)):
                agree[i] += 1
                agree[j] += 1
    scores = tuple(a / (n - 1) if n > 1 else 1.0 for a in agree)
    best = max(range(n), key=lambda k: (scores[k], -k))
    return Pick(best, answers[best], scores[best], scores)


JUDGE_SYSTEM = "You judge whether answers to a data question agree. Follow the instructions."


def judge_with(provider: ModelProvider) -> Callable[[str], Awaitable[str]]:
    """Ask ``provider`` a judge prompt (no tools)."""

    async def ask(text: str) -> str:
        completion = await provider.complete(JUDGE_SYSTEM, [Message("user", text)], [])
        return completion.text

    return ask
