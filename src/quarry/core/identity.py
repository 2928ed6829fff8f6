"""Which process this is, in one place.

Schedule fires record the node that won them, queue leases name their owner, and
logs and health answers say who is talking: all of them must agree on how a process
is named, so an operator can follow one process from a fire row to a lease to a log
line. ``host:pid`` is stable for the life of a process and unique on one machine.
"""

from __future__ import annotations

import os
import socket


def node_name() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"
