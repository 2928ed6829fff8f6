"""Apps at run time: controls, the cache key of stored results, and the page document.

Pure functions only: the run executor computes the task tables and stores what
:func:`build_app_result` returns at :func:`app_result_key`; the API and the web page
read it back from there.
"""

from __future__ import annotations

from quarry.runtime.apps.controls import resolve_controls
from quarry.runtime.apps.keys import app_result_key
from quarry.runtime.apps.result import RESULT_FORMAT, build_app_result

__all__ = ["RESULT_FORMAT", "app_result_key", "build_app_result", "resolve_controls"]
