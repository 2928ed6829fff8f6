"""Terminal output rules shared by every ``quarry`` command.

Rich wraps at 80 columns when output is not a terminal (a pipe, a CI log, an
editor's task runner), which split ``file:line:col: message`` lines in two and broke
every tool that parses them. When stdout is not a terminal the consoles get a width
no line reaches, so lines are never wrapped, even where an inherited ``COLUMNS``
(pytest-xdist workers, some CI runners export one) says otherwise; on a terminal the
terminal's width applies as before.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console

PIPED_WIDTH = 4096


def make_console(**options: Any) -> Console:
    """A console for a ``quarry`` command: never wrapping when stdout is not a terminal.

    The width is decided here rather than by ``COLUMNS`` alone because rich fixes a
    console's width when it is created: one made at import time from an inherited
    ``COLUMNS=80`` would keep wrapping whatever :func:`never_wrap_when_piped` sets later.
    """
    if not sys.stdout.isatty():
        options.setdefault("width", PIPED_WIDTH)
    return Console(**options)


def never_wrap_when_piped() -> None:
    """Give rich's consoles a very wide width when output is not a terminal."""
    if sys.stdout.isatty():  # a terminal wraps softly; tables fit its width
        return
    os.environ["COLUMNS"] = str(PIPED_WIDTH)
