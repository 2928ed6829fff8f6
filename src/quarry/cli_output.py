"""Terminal output rules shared by every ``quarry`` command.

Rich wraps at 80 columns when output is not a terminal (a pipe, a CI log, an
editor's task runner), which split ``file:line:col: message`` lines in two and broke
every tool that parses them. When stdout is not a terminal and the user set no
``COLUMNS``, the consoles get a width no line reaches, so lines are never wrapped;
on a terminal the terminal's width applies as before.
"""

from __future__ import annotations

import os
import sys

PIPED_WIDTH = 4096


def never_wrap_when_piped() -> None:
    """Give rich's consoles a very wide width when output is not a terminal."""
    if "COLUMNS" in os.environ:
        return
    if sys.stdout.isatty():  # a terminal wraps softly; tables fit its width
        return
    os.environ["COLUMNS"] = str(PIPED_WIDTH)
