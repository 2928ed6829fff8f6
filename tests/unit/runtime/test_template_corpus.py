"""Quarry renders the corpus of Oxy templates as Oxy does (see template_corpus.py)."""

from __future__ import annotations

import re

import pytest

from quarry.runtime.engine.templating import TemplateProblem, render_text
from tests.unit.runtime.template_corpus import CORPUS, KNOWN_DIFFERENCES, Case


def test_the_corpus_is_large_enough_and_names_are_unique() -> None:
    names = [case.name for case in CORPUS]
    assert len(names) >= 60
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.name)
def test_corpus(case: Case) -> None:
    if case.error is not None:
        with pytest.raises(TemplateProblem) as failed:
            render_text(case.template, case.context, strict=case.strict)
        assert case.error in str(failed.value)
        return
    output = render_text(case.template, case.context, strict=case.strict)
    if case.pattern is not None:
        assert re.fullmatch(case.pattern, output), output
    else:
        assert output == case.expected


@pytest.mark.parametrize(
    ("case", "oxy_output", "reason"), KNOWN_DIFFERENCES, ids=lambda v: getattr(v, "name", "")
)
def test_known_differences_stay_as_documented(case: Case, oxy_output: str, reason: str) -> None:
    assert render_text(case.template, case.context) == case.expected != oxy_output
    assert reason
