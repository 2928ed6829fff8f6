"""Idle compile processes (kept for the next compile, or prewarmed) end with the
interpreter: none is left to the garbage collector at exit, which warned that the
subprocess was still running and left its two pipes unclosed."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import warnings
warnings.simplefilter("always", ResourceWarning)
from quarry.factory.isolation import POOL, CompileLimits, prewarm
limits = CompileLimits()
prewarm(limits)
process = POOL.take_idle(limits)
process.wait_ready()
POOL.give_back(process)
print("idle", process.process.pid, flush=True)
"""


def test_idle_compile_processes_are_ended_at_exit() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.startswith("idle ")
    assert "ResourceWarning" not in done.stderr, done.stderr
    pid = int(done.stdout.split()[1])
    # The child was killed and reaped by the exiting interpreter, not orphaned.
    alive = subprocess.run(["kill", "-0", str(pid)], capture_output=True)
    assert alive.returncode != 0
