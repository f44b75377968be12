"""``python -m bench``: run every measurement, print the table, write ``bench/results.json``.

Exits 0 whether or not the aims are met (the verdicts are in the table and the JSON); non-zero
only when the benchmark itself could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer repetitions and smaller batches (a smoke run, noisier)",
    )
    p.add_argument(
        "--no-simple", action="store_true", help="skip the SimpleConsoleWorker throughput figures"
    )
    p.add_argument(
        "--skip-throughput", action="store_true", help="only the in-process figures (a) and (c)"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also print a cProfile of Runner.advance on N-step no-op runs",
    )
    p.add_argument(
        "--tasks-only",
        action="store_true",
        help="only (d), the Tasks page at 1,000,000 runs on SQLite and PostgreSQL "
        "(merged into the existing results file)",
    )
    p.add_argument("--skip-tasks", action="store_true", help="skip (d), the Tasks page figures")
    p.add_argument("--skip-peers", action="store_true", help="skip peers.dbos (DBOS beside ours)")
    p.add_argument(
        "--skip-live", action="store_true", help="skip the live stack's latency and memory"
    )
    p.add_argument(
        "--skip-postgres", action="store_true", help="no PostgreSQL figures (a cluster each run)"
    )
    p.add_argument("--output", type=Path, default=HERE / "results.json")
    p.add_argument("--keep", action="store_true", help="keep the temporary instance folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from . import inprocess, report, throughput
    from .harness import BenchEnv, log

    if args.tasks_only:
        return tasks_only(args, argv)

    quick = args.quick
    cfg: dict[str, Any] = {
        "steps": 50,
        "small_steps": 10,
        "engine_rounds": 9 if quick else 31,
        "commits_per_round": 50 if quick else 100,
        "breakdown_reps": 3 if quick else 5,
        "replay_sizes": [10, 50, 100, 200],
        "replay_reps": 10 if quick else 40,
        # Batches per worker class: a forked work-horse per job is ~10x slower than a
        # SimpleWorker on a small VM, so its batches are smaller (each batch ~5 s).
        "batches": {
            "forking": {"engine": 30 if quick else 50, "raw": 100 if quick else 150},
            "simple": {"engine": 60 if quick else 150, "raw": 300 if quick else 800},
        },
        "throughput_reps": 1 if quick else 3,
        "worker_counts": [1, 2],
        "simple_too": not args.no_simple,
        "pg_rounds": 7 if quick else 15,
        "peer_rounds": 3,
        "peer_workflows": 10 if quick else 30,
        "peer_worker_runs": 15 if quick else 40,
        "latency_runs": 10 if quick else 40,
        "latency_resumes": 5 if quick else 20,
        "latency_timers": 3 if quick else 10,
        "memory_runs": 1_000 if quick else 10_000,
        "tasks_runs": 100_000 if quick else 1_000_000,
        "tasks_reps": 5 if quick else 15,
    }
    started = time.perf_counter()
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "config": cfg,
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_average": {"start": os.getloadavg()},
    }
    with BenchEnv(keep=args.keep) as env:
        import sqlite3

        results["sqlite"] = sqlite3.sqlite_version
        log("(a) per-step engine overhead, next to one SQLite commit ...")
        results["step_overhead"], results["commit"] = inprocess.measure_step_overhead(
            env, cfg["steps"], cfg["small_steps"], cfg["engine_rounds"], cfg["commits_per_round"]
        )
        results["breakdown"] = inprocess.measure_breakdown(env, cfg["steps"], cfg["breakdown_reps"])
        log("(c) replay of completed steps ...")
        results["replay"] = inprocess.measure_replay(env, cfg["replay_sizes"], cfg["replay_reps"])
        if args.profile:
            print(inprocess.profile_engine(env, cfg["steps"], 20))
        if not args.skip_throughput:
            log("(b) throughput through RQ workers ...")
            try:
                results["throughput"] = throughput.measure_throughput(
                    env,
                    batches=cfg["batches"],
                    reps=cfg["throughput_reps"],
                    worker_counts=cfg["worker_counts"],
                    simple_too=cfg["simple_too"],
                )
            except Exception:
                for text in env.worker_logs():
                    print(text, file=sys.stderr)
                raise
        if not args.skip_peers:
            from . import peers

            log("peers: DBOS Transact beside ours ...")
            results["peers"] = {
                "dbos": peers.measure_dbos(
                    env, cfg["peer_rounds"], cfg["peer_workflows"], cfg["peer_worker_runs"]
                )
            }
        from . import journal

        log("(e) journal export and recovery ...")
        results["journal"] = journal.measure_journal(env, 100, 3 if quick else 7)
        memory = None
        if not args.skip_live:
            from . import live

            log("latency and memory through a live stack (web, worker, scheduler) ...")
            results["latency"], memory = live.measure_live(
                env,
                cfg["latency_runs"],
                cfg["latency_resumes"],
                cfg["latency_timers"],
                cfg["memory_runs"],
            )
        last_figures(env, args, cfg, results, memory)
    results["load_average"]["end"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - started
    results["aims"] = report.verdicts(results)
    print(report.table(results))
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote {args.output} ({results['wall_s']:.0f} s in all)")
    return 0


def last_figures(
    env: Any, args: argparse.Namespace, cfg: dict[str, Any], results: dict[str, Any], memory: Any
) -> None:
    """The live stack's memory batch drains while (d) seeds its databases (work that is not
    measured); then, with the stack stopped, ``step_overhead_postgresql`` and (d)'s timings,
    on one throwaway PostgreSQL cluster."""
    from contextlib import nullcontext

    from . import inprocess, pg, tasks
    from .harness import log

    with nullcontext(None) if args.skip_postgres else pg.cluster() as server:
        prepared = None
        if not args.skip_tasks:
            prepared = tasks.prepare_tasks(env.instance, cfg["tasks_runs"], server)
        if memory is not None:
            log(f"memory: waiting for the worker to finish its {cfg['memory_runs']:,} runs ...")
            results["memory"] = memory.finish()
        if server is not None:
            log("(a) per-step engine overhead on PostgreSQL, next to one PostgreSQL commit ...")
            with pg.app_on(server.create_database("bench_engine"), restore=env.app):
                step, commit = inprocess.measure_step_overhead(
                    env,
                    cfg["steps"],
                    cfg["small_steps"],
                    cfg["pg_rounds"],
                    cfg["commits_per_round"],
                )
            results["step_overhead_postgresql"] = {
                **step,
                "commit_us": commit["commit_us"],
                "commit_dbapi_us": commit["commit_dbapi_us"],
                "commit": commit,
                "server": "tests.pgserver settings: fsync=off, synchronous_commit=off",
            }
        if prepared is not None:
            results["tasks"] = tasks.measure_tasks(prepared, cfg["tasks_reps"])


def tasks_only(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``--tasks-only``: measure (d) alone, print its table, and merge it into the results
    file (the other figures there are kept)."""
    from . import pg, report, tasks
    from .harness import BenchEnv, log

    started = time.perf_counter()
    runs = 100_000 if args.quick else tasks.RUNS
    with BenchEnv(keep=args.keep) as env, pg.cluster() as server:
        prepared = tasks.prepare_tasks(env.instance, runs, server)
        figures = tasks.measure_tasks(prepared, 5 if args.quick else 15)
    figures["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    figures["command"] = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(report.tasks_table(figures))
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results["tasks"] = figures
    if "step_overhead" in results:
        results["aims"] = report.verdicts(results)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote (d) into {args.output} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
