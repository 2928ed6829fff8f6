"""Moved: ``Services`` is defined in :mod:`quarry.runtime.services` and built by
:mod:`quarry.node.services` (the composition root). This shim keeps old imports
working while they are switched over; it is deleted once none is left."""

from quarry.node.services import build_run_worker, build_services
from quarry.runtime.services import Services

__all__ = ["Services", "build_run_worker", "build_services"]
