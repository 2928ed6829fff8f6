"""Compile isolation overhead in a long-lived process (as in the Factory).

``compile_bench.py`` starts a fresh process per compile, like ``quarry compile``, so
with ``QUARRY_COMPILE_ISOLATION=process`` it also pays the compile process's start
(interpreter + definition models, about 0.5 s). The Factory keeps its compile process
between compiles; this script measures that case: in one process, a full compile of
a generated workspace, then ``--repeat`` one-file recompiles (one workflow edited
each time), each with the parse inline and in the (warm) compile process,
interleaved. SQLite + local folder.

    .venv/bin/python bench/isolation_bench.py --size 10000 --repeat 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _workspace_gen import generate_workspace, touch_one_file


def main() -> None:
    from quarry.core.settings import Settings
    from quarry.factory.isolation import CompileLimits
    from quarry.factory.local import compile_local
    from quarry.node.services import build_services

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        times: dict[str, list[float]] = {"inline": [], "process": []}
        services = {}
        roots = {}
        for mode in times:
            root = base / mode / "ws"
            generate_workspace(root, args.size)
            svc = build_services(
                Settings(
                    database_url=f"sqlite:///{base / mode / 'state.db'}",
                    blob_url=f"file://{base / mode / 'blobs'}",
                )
            )
            limits = CompileLimits(isolation=mode)  # type: ignore[arg-type]
            started = time.perf_counter()
            compile_local(svc.engine, svc.store, "local", root, "bench", limits=limits)
            print(f"{mode}: full compile {time.perf_counter() - started:.2f}s")
            services[mode], roots[mode] = svc, root
        for i in range(args.repeat + 1):  # the first round warms up and is dropped
            for mode in times:
                touch_one_file(roots[mode], i + 1)
                limits = CompileLimits(isolation=mode)  # type: ignore[arg-type]
                svc = services[mode]
                started = time.perf_counter()
                result = compile_local(
                    svc.engine, svc.store, "local", roots[mode], "bench", limits=limits
                )
                seconds = time.perf_counter() - started
                assert result.parsed >= 1 and result.promoted, result
                if i:
                    times[mode].append(seconds)
        inline, process = (statistics.median(times[m]) for m in ("inline", "process"))
        print(f"one-file recompile of {args.size:,} definitions, median of {args.repeat}:")
        print(f"  inline  {inline * 1000:8.1f} ms")
        print(f"  process {process * 1000:8.1f} ms  ({(process - inline) * 1000:+.1f} ms)")
        for svc in services.values():
            svc.close()


if __name__ == "__main__":
    main()
