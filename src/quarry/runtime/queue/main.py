"""A small worker process: ``python -m quarry.runtime.queue.main --handler mod:func``.

The fleet tests and benchmarks start these: the default worker, the batched one
(``--batch N``) or ``quarry worker``'s concurrent one (``--slots N``, every task
light), with any handler; ``quarry worker`` runs the same classes with the run
executor's handler (``quarry.node.services.build_run_worker``).
It prints ``READY <owner>`` on stdout once it listens for wake-ups, and on SIGTERM
stops gracefully and prints ``STOPPED <owner> <stats as JSON>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from quarry.runtime.queue.batch import DEFAULT_FLUSH_INTERVAL, make_worker
from quarry.runtime.queue.concurrent import ConcurrentWorker
from quarry.runtime.queue.worker import Handler, Worker, default_owner
from quarry.store.db import create_state_engine
from quarry.store.queue.port import Task, open_queue


def noop(task: Task) -> object:
    return None


def _light(task: Task) -> bool:
    """With ``--slots``, every task may run beside others."""
    return True


def load_handler(spec: str) -> Handler:
    if spec == "noop":
        return noop
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise SystemExit(f"--handler must be 'noop' or 'module:function', not {spec!r}")
    handler: Handler = getattr(importlib.import_module(module_name), attr)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quarry.runtime.queue.main")
    parser.add_argument("--database-url", default=os.environ.get("QUARRY_DATABASE_URL"))
    parser.add_argument("--handler", default="noop")
    parser.add_argument("--queue", action="append", dest="queues")
    parser.add_argument("--owner", default=None)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--reap-interval", type=float, default=5.0)
    parser.add_argument("--shutdown-grace", type=float, default=None)
    parser.add_argument("--unfair", action="store_true", help="claim in id order only")
    parser.add_argument(
        "--sync-commit",
        action="store_true",
        help="wait for the WAL flush on every claim and completion (default: asynchronous)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="claim up to N tasks per statement and buffer their completions (default 1)",
    )
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=DEFAULT_FLUSH_INTERVAL,
        help="with --batch: record a finished task's success within this many seconds",
    )
    parser.add_argument(
        "--slots",
        type=int,
        default=1,
        help="run up to N tasks at once, every task light (the ConcurrentWorker of "
        "quarry worker; it claims a group per statement); not with --batch",
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url or QUARRY_DATABASE_URL is required")
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    if args.slots < 1:
        parser.error("--slots must be at least 1")
    if args.slots > 1 and args.batch > 1:
        parser.error("--slots and --batch are different workers; give one of them")
    logging.basicConfig(level=args.log_level, stream=sys.stderr)
    engine = create_state_engine(args.database_url, pool_size=2)
    kwargs = {"fair": False} if args.unfair and engine.dialect.name == "postgresql" else {}
    queue = open_queue(engine, **kwargs)
    owner = args.owner or default_owner()
    common: dict[str, Any] = {
        "queues": args.queues or ["default"],
        "owner": owner,
        "lease_seconds": args.lease,
        "poll_interval": args.poll,
        "shutdown_grace": args.shutdown_grace,
        "reap_interval": args.reap_interval or None,
        "async_commit": not args.sync_commit,
    }
    handler = load_handler(args.handler)
    worker: Worker
    if args.slots > 1:
        worker = ConcurrentWorker(queue, handler, slots=args.slots, light=_light, **common)
    else:
        worker = make_worker(
            queue,
            handler,
            batch_size=args.batch,
            flush_interval=args.flush_interval,
            **common,
        )
    worker.install_signal_handlers()

    def ready() -> None:
        print(f"READY {owner}", flush=True)

    stats = worker.run(on_ready=ready)
    print(f"STOPPED {owner} {json.dumps(dataclasses.asdict(stats))}", flush=True)
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
