"""Compile benchmark: full compile and one-file recompile of generated workspaces.

For each size (definition files; default 100, 1,000 and 10,000) and each state
backend (SQLite + local folder; also Postgres + local folder with ``--postgres``):

* **full**: a fresh state database and object store, ``compile_local`` of the
  generated workspace (parse, validate, upload every blob, store, promote).
* **noop**: compile again with nothing changed (the revision already exists).
* **1-file**: change one workflow file, compile again (one file re-parsed, the
  rest reused from the previous revision, a new revision stored and promoted).

Every measurement runs in a fresh child process (``python compile_bench.py --child``),
the way ``quarry compile`` runs: the child builds its services (engine, migrations
check, object store) *before* the clock starts, times ``compile_local`` alone, and
reports its peak RSS (``ru_maxrss``) and the RSS it had before compiling
(interpreter, imports, services). ``wall`` is the child's whole run as the parent
sees it (interpreter start to exit), i.e. what a user waits for with ``quarry compile``.

``cpu`` is the CPU time the compile used: the child's own (``process_time``) plus,
on Postgres, that of the server backends serving its connections (from
``/proc/<pid>/stat``, 10 ms ticks). On a shared, loaded machine elapsed times stretch
with the load while CPU time mostly does not, so the CPU ratio is printed next to the
elapsed one as a cross-check; the goal is judged on elapsed time.

Goal (issue 2): the one-file recompile of 10,000 definitions under 10% of the full
compile (``1-file/full`` column).

    .venv/bin/python bench/compile_bench.py [--sizes 100,1000,10000] [--postgres]

**Against a previous compiler** (issue 15: a 1,000-definition workspace compiles
within 10% of the compiler before the Oxy-compatibility work), ``--previous DIR``
names a checkout of that commit (``git worktree add /tmp/prev <commit>``); its
``src`` is put on the children's ``PYTHONPATH``, and ``--current DIR`` likewise for
the compiler under test (default: this checkout). Both run in the same bench
run, alternating, on SQLite, over two workloads of ``--compare-size`` definitions:
the generated workspace (both compilers read it) and the **conformance corpus**
(``tests/conformance/workspaces/full``, its workflows, apps and agents copied under
``copies/<k>/`` until it holds that many definitions). The previous compiler
refuses the corpus (it predates Oxy's formats), so its figure there is the time it
takes to find every problem, shown with the problem count.

    .venv/bin/python bench/compile_bench.py --previous /tmp/prev [--current DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _workspace_gen import generate_workspace, touch_one_file  # noqa: E402

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


# -- child: one measurement in a fresh process ------------------------------------
def _rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _backend_cpu(engine: Any) -> dict[int, float]:
    """CPU seconds so far of each Postgres backend connected to this database."""
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as conn:
        pids = conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        ).scalars()
        found = list(pids)
    tick = os.sysconf("SC_CLK_TCK")
    cpu: dict[int, float] = {}
    for pid in found:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return cpu


def child(args: argparse.Namespace) -> None:
    imports_started = time.perf_counter()
    from quarry.core.settings import Settings
    from quarry.factory.isolation import CompileLimits
    from quarry.factory.local import compile_local

    try:
        from quarry.node.services import build_services
    except ImportError:  # an older checkout (--previous) keeps it in quarry.api
        from quarry.api.services import build_services  # type: ignore[no-redef]
    # Quarry's imports (the compiler, and what the services pull in): part of what a
    # user waits for, and what a compiler moves out of compile_local by importing
    # at module level, so reported next to the compile time.
    imports = time.perf_counter() - imports_started

    settings = Settings(database_url=args.db, blob_url=args.blobs)
    limits = CompileLimits.from_settings(settings)  # QUARRY_COMPILE_ISOLATION=inline|process
    try:  # as quarry compile does: the compile process starts with the services
        from quarry.factory.isolation import prewarm
    except ImportError:  # an older checkout (--previous) has no prewarm, nor limits=
        pass
    else:
        prewarm(limits)
    import inspect

    takes_limits = "limits" in inspect.signature(compile_local).parameters
    svc = build_services(settings)
    from quarry.core.errors import CompileFailed

    before = _rss_kb()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    backends = _backend_cpu(svc.engine)
    cpu_started = time.process_time()
    started = time.perf_counter()
    failed: CompileFailed | None = None
    try:
        extra: dict[str, Any] = {"limits": limits} if takes_limits else {}
        result = compile_local(
            svc.engine, svc.store, settings.tenant, Path(args.root), "bench", **extra
        )
    except CompileFailed as exc:  # a compiler that refuses the workspace: time to refuse
        failed = exc
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    cpu += sum(c - backends.get(pid, 0.0) for pid, c in _backend_cpu(svc.engine).items())
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    svc.close()
    if failed is not None:
        errors = [p for p in failed.problems if getattr(p, "severity", "error") != "warning"]
        print(
            json.dumps(
                {
                    "seconds": seconds,
                    "cpu": cpu,
                    "imports": imports,
                    "failed": len(errors),
                    "rss_before_kb": before,
                    "rss_peak_kb": _rss_kb(),
                }
            )
        )
        return
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu": cpu,
                "imports": imports,
                "definitions": result.definitions,
                "files": result.files,
                "parsed": result.parsed,
                "reused": result.reused,
                "blobs_uploaded": result.blobs_uploaded,
                "promoted": result.promoted,
                "unchanged": result.unchanged,
                "rss_before_kb": before,
                "rss_peak_kb": _rss_kb(),
            }
        )
    )


# -- parent -----------------------------------------------------------------------
class ChildFailed(RuntimeError):
    pass


@dataclass
class Run:
    seconds: float
    cpu: float
    wall: float
    load: float
    rss_before_mb: float
    rss_peak_mb: float
    info: dict[str, object]


def measure(
    db: str, blobs: str, root: Path, profile: str | None = None, src: Path | None = None
) -> Run:
    """One compile in a fresh child; ``src``: the ``src`` folder of another checkout
    whose ``quarry`` the child imports instead of the installed one."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--db", db]
    cmd += ["--blobs", blobs, "--root", str(root)]
    if profile:
        cmd += ["--profile", profile]
    env = None
    if src is not None:  # a comparison: both compilers parse inline (the compiler itself,
        # not the start of a compile process, which the older one cannot pre-warm)
        env = {**os.environ, "PYTHONPATH": str(src), "QUARRY_COMPILE_ISOLATION": "inline"}
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise ChildFailed(f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return Run(
        seconds=info["seconds"],
        cpu=info["cpu"],
        wall=wall,
        load=load,
        rss_before_mb=info["rss_before_kb"] / 1024,
        rss_peak_mb=info["rss_peak_kb"] / 1024,
        info=info,
    )


class Backend:
    """A fresh state database + object store per ``fresh()``; ``cleanup()`` drops it."""

    name = ""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.count = 0

    def fresh(self) -> tuple[str, str]:
        raise NotImplementedError

    def cleanup(self) -> None:
        pass

    def _blobs(self) -> tuple[Path, str]:
        self.count += 1
        path = self.work / f"state-{self.name}-{self.count}"
        path.mkdir(parents=True)
        return path, (path / "blobs").as_uri()


class SqliteBackend(Backend):
    name = "sqlite"

    def fresh(self) -> tuple[str, str]:
        path, blobs = self._blobs()
        return f"sqlite:///{path / 'state.db'}", blobs


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.created: list[str] = []

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            c.execute(sql)

    def fresh(self) -> tuple[str, str]:
        _, blobs = self._blobs()
        db = f"quarry_bench_{os.getpid()}_{self.count}"
        self._admin(f'CREATE DATABASE "{db}"')
        self.created.append(db)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db}", blobs

    def cleanup(self) -> None:
        for db in self.created:
            self._admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        self.created.clear()


def bench_size(backend: Backend, work: Path, n: int, repeat: int, profile_dir: Path | None) -> dict:
    root = work / f"ws-{backend.name}-{n}"
    shutil.rmtree(root, ignore_errors=True)
    generate_workspace(root, n)
    fulls: list[Run] = []
    db = blobs = ""
    if profile_dir is not None:  # profiled runs are extra: cProfile slows the code down
        db, blobs = backend.fresh()
        measure(db, blobs, root, str(profile_dir / f"{backend.name}-{n}-full.prof"))
        touch_one_file(root, 0)
        measure(db, blobs, root, str(profile_dir / f"{backend.name}-{n}-onefile.prof"))
        generate_workspace(root, n)
    for _ in range(repeat):  # every full compile starts from an empty state db + store
        db, blobs = backend.fresh()
        fulls.append(measure(db, blobs, root))
    # recompiles run against the state of the last full compile
    noops = [measure(db, blobs, root) for _ in range(repeat)]
    ones: list[Run] = []
    for gen in range(repeat):
        touch_one_file(root, gen + 1)
        ones.append(measure(db, blobs, root))
    one = ones[-1].info
    assert one["parsed"] == 1 and one["promoted"], one
    assert all(r.info["unchanged"] for r in noops), [r.info for r in noops]
    shutil.rmtree(root, ignore_errors=True)

    loads = [r.load for r in fulls + noops + ones]

    def med(runs: list[Run], attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs)

    return {
        "backend": backend.name,
        "size": n,
        "definitions": fulls[0].info["definitions"],
        "files": fulls[0].info["files"],
        "full_s": med(fulls, "seconds"),
        "full_wall_s": med(fulls, "wall"),
        "full_rss_before_mb": med(fulls, "rss_before_mb"),
        "full_rss_peak_mb": max(r.rss_peak_mb for r in fulls),
        "noop_s": med(noops, "seconds"),
        "one_s": med(ones, "seconds"),
        "one_wall_s": med(ones, "wall"),
        "one_rss_peak_mb": max(r.rss_peak_mb for r in ones),
        "one_ratio": med(ones, "seconds") / med(fulls, "seconds"),
        "full_cpu_s": med(fulls, "cpu"),
        "one_cpu_s": med(ones, "cpu"),
        "one_cpu_ratio": med(ones, "cpu") / med(fulls, "cpu"),
        "load": (min(loads), statistics.median(loads), max(loads)),
        "one_wall_ratio": med(ones, "wall") / med(fulls, "wall"),
        "repeat": repeat,
        "raw": {
            "full_s": [round(r.seconds, 3) for r in fulls],
            "noop_s": [round(r.seconds, 3) for r in noops],
            "one_s": [round(r.seconds, 3) for r in ones],
            "full_cpu_s": [round(r.cpu, 3) for r in fulls],
            "one_cpu_s": [round(r.cpu, 3) for r in ones],
        },
    }


# -- against a previous compiler (issue 15) ------------------------------------------
CORPUS = HERE.parent / "tests" / "conformance" / "workspaces" / "full"
_COPIED = ("workflows/", "apps/", "agents/")


def corpus_workspace(root: Path, n: int) -> str:
    """The conformance corpus with its workflows, apps and agents copied under
    ``copies/<k>/`` until it holds about ``n`` definitions (references are
    workspace-relative, so each copy still finds what it names); the path of one
    copied workflow, the file a 1-file recompile changes."""
    from quarry.definitions.kinds import classify_path

    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(CORPUS, root)
    files = sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file())
    definitions = [f for f in files if classify_path(f) is not None]
    copied = [f for f in definitions if f.startswith(_COPIED) and f.endswith(".yml")]
    copied = [f for f in copied if classify_path(f) is not None]
    k = 0
    while len(definitions) + k * len(copied) < n:
        for f in copied:
            target = root / "copies" / str(k) / f
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(CORPUS / f, target)
        k += 1
    return next(f"copies/0/{f}" for f in copied if f.endswith(".workflow.yml"))


def _imports(run: Run) -> float:
    found = run.info["imports"]
    assert isinstance(found, float)
    return found


def compare(work: Path, n: int, repeat: int, current: Path | None, previous: Path) -> list[dict]:
    """Full and 1-file compiles of both workloads by both compilers, alternating."""
    rows = []
    current = current or Path(__file__).resolve().parent.parent / "src"
    backend = SqliteBackend(work)
    for workload in ("generated", "corpus"):
        root = work / f"cmp-{workload}"
        if workload == "generated":
            shutil.rmtree(root, ignore_errors=True)
            generate_workspace(root, n)
            edited = None
        else:
            edited = corpus_workspace(root, n)
        runs: dict[str, dict[str, list[Run]]] = {
            name: {"full": [], "one": []} for name in ("previous", "current")
        }
        compilers = [("previous", previous), ("current", current)]
        for _name, src in compilers:  # untimed: page cache, .pyc files, first-run costs
            db, blobs = backend.fresh()
            measure(db, blobs, root, src=src)
        for gen in range(repeat):
            # who goes first alternates: neither always runs on the other's leftovers
            for name, src in compilers if gen % 2 == 0 else compilers[::-1]:
                db, blobs = backend.fresh()
                full = measure(db, blobs, root, src=src)
                runs[name]["full"].append(full)
                if "failed" in full.info:
                    continue  # nothing stored to recompile against
                if edited is None:
                    touch_one_file(root, gen + 1)
                else:
                    path = root / edited
                    path.write_text(path.read_text() + f"\n# edit {name} {gen}\n")
                runs[name]["one"].append(measure(db, blobs, root, src=src))
        for name, by in runs.items():
            fulls = by["full"]
            pairs = list(zip(fulls, runs["previous"]["full"], strict=True))
            rows.append(
                {
                    "workload": workload,
                    "compiler": name,
                    "definitions": fulls[0].info.get("definitions"),
                    "refused": fulls[0].info.get("failed"),
                    "full_s": statistics.median(r.seconds for r in fulls),
                    "full_cpu_s": statistics.median(r.cpu for r in fulls),
                    "one_s": statistics.median(r.seconds for r in by["one"]) if by["one"] else None,
                    "raw_full_s": [round(r.seconds, 3) for r in fulls],
                    "imports_s": statistics.median(_imports(r) for r in fulls),
                    "wall_s": statistics.median(r.wall for r in fulls),
                    # current / previous of the same round (the two ran back to back)
                    "round_ratios": [c.seconds / p.seconds for c, p in pairs],
                    "round_cpu_ratios": [c.cpu / p.cpu for c, p in pairs],
                    "round_wall_ratios": [c.wall / p.wall for c, p in pairs],
                    "round_with_imports_ratios": [
                        (c.seconds + _imports(c)) / (p.seconds + _imports(p)) for c, p in pairs
                    ],
                    "raw_one_s": [round(r.seconds, 3) for r in by["one"]],
                    "load": statistics.median(r.load for r in fulls),
                }
            )
        shutil.rmtree(root, ignore_errors=True)
    return rows


def print_comparison(rows: list[dict]) -> None:
    print(
        f"{'workload':<11}{'compiler':<10}{'defs':>6} | {'full s':>7}{'cpu s':>7}"
        f"{'1-file s':>9}{'imports s':>10}{'wall s':>8} | {'full vs previous':>16} | {'load':>5}"
    )
    by = {(r["workload"], r["compiler"]): r for r in rows}
    for r in rows:
        prev = by[(r["workload"], "previous")]
        ratio = ""
        if r["compiler"] == "current" and not prev["refused"]:
            ratio = f"{statistics.median(r['round_ratios']):.2f}x"
        one = f"{r['one_s']:.2f}" if r["one_s"] is not None else "-"
        defs = (
            r["definitions"] if r["definitions"] is not None else f"refused ({r['refused']} errors)"
        )
        print(
            f"{r['workload']:<11}{r['compiler']:<10}{defs!s:>6} | {r['full_s']:>7.2f}"
            f"{r['full_cpu_s']:>7.2f}{one:>9}{r['imports_s']:>10.2f}{r['wall_s']:>8.2f}"
            f" | {ratio:>16} | {r['load']:>5.1f}"
        )
    cur = by[("generated", "current")]
    print(f"generated, current / previous of each round ({len(cur['round_ratios'])} rounds):")
    for label, key in (
        ("full (compile_local)", "round_ratios"),
        ("full, CPU", "round_cpu_ratios"),
        ("full + Quarry's imports", "round_with_imports_ratios"),
        ("whole process (wall)", "round_wall_ratios"),
    ):
        found = cur[key]
        print(
            f"  {label:<24} median {statistics.median(found):.2f}x  worst {max(found):.2f}x"
            f"  best {min(found):.2f}x  [{', '.join(f'{x:.2f}' for x in found)}]"
        )
    ratio = statistics.median(cur["round_ratios"])
    verdict = "MET" if ratio <= 1.10 else "NOT MET"
    print(
        f"goal (issue 15: {cur['definitions']} definitions within 10% of the previous "
        f"compiler): full {ratio:.2f}x (median of the rounds' ratios; worst round "
        f"{max(cur['round_ratios']):.2f}x) -> {verdict}"
    )
    for r in rows:
        print(f"  {r['workload']} {r['compiler']}: full {r['raw_full_s']} 1-file {r['raw_one_s']}")


def print_tables(rows: list[dict]) -> None:
    head = (
        f"{'backend':<9}{'defs':>7}{'files':>7} | {'full s':>7}{'wall s':>7}{'RSS0 MB':>8}"
        f"{'peak MB':>8} | {'noop s':>7} | {'1-file s':>8}{'wall s':>7}{'peak MB':>8}"
        f" | {'1-file/full':>11}{'wall/wall':>10} | {'cpu full':>8}{'cpu 1-f':>8}{'cpu/cpu':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['backend']:<9}{r['definitions']:>7}{r['files']:>7} | {r['full_s']:>7.2f}"
            f"{r['full_wall_s']:>7.2f}{r['full_rss_before_mb']:>8.0f}"
            f"{r['full_rss_peak_mb']:>8.0f} |"
            f" {r['noop_s']:>7.2f} | {r['one_s']:>8.2f}{r['one_wall_s']:>7.2f}"
            f"{r['one_rss_peak_mb']:>8.0f} | {r['one_ratio']:>10.1%}{r['one_wall_ratio']:>10.1%}"
            f" | {r['full_cpu_s']:>8.2f}{r['one_cpu_s']:>8.2f}{r['one_cpu_ratio']:>8.1%}"
        )
    print()
    print("full/noop/1-file s: compile_local in a fresh process (median); wall: the whole")
    print("child process; RSS0: RSS after imports + services, before compiling; peak: ru_maxrss.")
    print("cpu: CPU seconds of the compile (the process, plus the Postgres backends it used).")
    for r in rows:
        low, mid, high = r["load"]
        print(
            f"{r['backend']} {r['definitions']}: 1-min load average {low:.1f} / {mid:.1f} / "
            f"{high:.1f} (min / median / max over its runs; nproc {os.cpu_count()})"
        )
    for r in rows:
        if r["size"] >= 10000:
            ok = "MET" if r["one_ratio"] < 0.10 else "NOT MET"
            print(
                f"goal (1-file recompile of 10,000 < 10% of full), {r['backend']}: "
                f"{r['one_ratio']:.1%} -> {ok} (CPU time: {r['one_cpu_ratio']:.1%})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description="Quarry compile benchmark")
    parser.add_argument(
        "--sizes",
        type=lambda v: [int(x) for x in v.split(",") if x],
        nargs="+",
        default=[[100, 1000, 10000]],
        help="definition counts, e.g. --sizes 100,1000,10000 or --sizes 100 1000",
    )
    parser.add_argument("--postgres", action="store_true", help="also Postgres + local folder")
    parser.add_argument("--no-sqlite", action="store_true", help="skip SQLite")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--profile", type=Path, help="write cProfile stats of a full and a 1-file compile here"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument(
        "--previous", type=Path, help="checkout of the previous compiler: compare with it"
    )
    parser.add_argument(
        "--current", type=Path, help="checkout of the compiler under test (default: this checkout)"
    )
    parser.add_argument("--compare-size", type=int, default=1000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--blobs", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sizes = [n for group in args.sizes for n in group]
    if args.child:
        child(args)
        return
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.previous is not None:
        current = None if args.current is None else args.current / "src"
        with tempfile.TemporaryDirectory(prefix="quarry-compile-compare-") as tmp:
            found = compare(
                Path(tmp), args.compare_size, args.repeat, current, args.previous / "src"
            )
        print_comparison(found)
        if args.json:
            args.json.write_text(json.dumps(found, indent=2))
        return
    import quarry

    print(f"quarry from {Path(quarry.__file__).parent}", file=sys.stderr)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="quarry-compile-bench-") as tmp:
        work = Path(tmp)
        backends: list[Backend] = [] if args.no_sqlite else [SqliteBackend(work)]
        if args.postgres:
            backends.append(PostgresBackend(work))
        for backend in backends:
            try:
                for n in args.sizes:
                    t0 = time.perf_counter()
                    rows.append(bench_size(backend, work, n, args.repeat, args.profile))
                    print(
                        f"  {backend.name} {n}: done in {time.perf_counter() - t0:.0f}s",
                        file=sys.stderr,
                        flush=True,
                    )
            except ChildFailed as failed:
                print(failed, file=sys.stderr)
                print_tables(rows)  # what finished before the failure
                sys.exit(1)
            finally:
                backend.cleanup()
    print_tables(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
