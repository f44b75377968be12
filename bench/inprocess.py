"""In-process measurements: (a) the engine's per-step overhead against bare step calls and
one commit, and (c) the cost of replaying already-completed steps.

Everything runs in this process, inside the app context, on the database of the app pushed
there: the benchmark's SQLite database (WAL, ``synchronous=NORMAL``, the engine's own
connection setup) or, for ``step_overhead_postgresql``, a throwaway PostgreSQL cluster
(``bench.pg``); the commit baselines follow the database.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text, update

import console.runs as domain
import workers.jobs as jobs
from console.extensions import db, write_transaction
from console.models import Run, StepRun
from console.timeutil import utcnow
from workers.jobs import Runner
from workers.sandbox import Sandbox

from .harness import BenchEnv, Flow, linear_fit, log, median

perf = time.perf_counter


@contextmanager
def no_gc() -> Any:
    """Keep the collector out of single timings (it runs between them instead)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# ------------------------------------------------------------------------ one SQLite commit

COMMIT_TABLE = {
    "sqlite": "CREATE TABLE IF NOT EXISTS bench_commit (id INTEGER PRIMARY KEY, value TEXT)",
    "postgresql": "CREATE TABLE IF NOT EXISTS bench_commit (id SERIAL PRIMARY KEY, value TEXT)",
}
COMMIT_INSERT = text("INSERT INTO bench_commit (value) VALUES (:value)")


def commit_plain() -> None:
    """The baseline: one small INSERT + COMMIT through the app's session and engine (the
    engine's connection setup: WAL, ``synchronous=NORMAL``, explicit ``BEGIN``)."""
    db.session.execute(COMMIT_INSERT, {"value": "x"})
    db.session.commit()


def commit_immediate() -> None:
    """The same, opened the way the engine's checkpoints open theirs (``BEGIN IMMEDIATE``)."""
    write_transaction()
    db.session.execute(COMMIT_INSERT, {"value": "x"})
    db.session.commit()


_raw: dict[str, Any] = {}


def commit_dbapi() -> None:
    """For reference: the same INSERT + COMMIT straight on the driver (a pooled sqlite3
    connection with the engine's pragmas, or a psycopg connection), without SQLAlchemy."""
    raw = _raw.get("conn")
    if raw is None:
        raw = _raw["conn"] = db.engine.raw_connection()
        _raw["cursor"] = raw.cursor()
        _raw["sqlite"] = db.engine.dialect.name == "sqlite"
    cursor = _raw["cursor"]
    if _raw["sqlite"]:
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO bench_commit (value) VALUES (?)", ("x",))
        cursor.execute("COMMIT")
    else:  # psycopg opens the transaction itself
        cursor.execute("INSERT INTO bench_commit (value) VALUES (%s)", ("x",))
        raw.commit()


def setup_commit() -> None:
    db.session.execute(text(COMMIT_TABLE[db.engine.dialect.name]))
    db.session.commit()
    for _ in range(50):  # warm-up: statement cache, pool, WAL file
        commit_plain()
        commit_immediate()
        commit_dbapi()


def time_commits(fn: Callable[[], None], count: int) -> list[float]:
    samples = []
    with no_gc():
        for _ in range(count):
            t0 = perf()
            fn()
            samples.append(perf() - t0)
    return samples


# ------------------------------------------------------------- (a) per-step engine overhead


def bare_functions(env: BenchEnv, flow: Flow) -> list[Callable[[Any], Any]]:
    fns = []
    for code in env.step_codes(flow):
        namespace: dict[str, Any] = {}
        exec(compile(code, "<bench step>", "exec"), namespace)
        fns.append(namespace["run"])
    return fns


def time_bare(fns: list[Callable[[Any], Any]], reps: int) -> float:
    """Median seconds to call every step function once, directly (``run(None)``)."""
    samples = []
    with no_gc():
        for _ in range(reps):
            t0 = perf()
            for fn in fns:
                fn(None)
            samples.append(perf() - t0)
    return median(samples)


def time_engine_run(env: BenchEnv, flow: Flow) -> float:
    """Seconds for ``Runner(run_id).advance()`` to execute a fresh run to completion."""
    run_id = env.new_run(flow)
    with no_gc():
        t0 = perf()
        status = Runner(run_id).advance()
        elapsed = perf() - t0
    db.session.remove()
    if status != "completed":
        raise RuntimeError(f"benchmark run {run_id} ended {status!r}, expected completed")
    return elapsed


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def measure_step_overhead(
    env: BenchEnv, steps: int, small: int, rounds: int, commits_per_round: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rounds that each time one N-step engine run, one small run, the bare calls and a
    batch of commits of each kind, so that the engine and its baselines see the same machine
    conditions (a shared VM's speed drifts by tens of percent). A round's commit figure is
    the batch's mean, like the engine's (a run is a batch of steps): WAL checkpoints and
    slow patches count in both. Figures are medians over the rounds; the ratio is the median
    of the rounds' ratios."""
    flow = env.define(f"bench_noop_{steps}", steps)
    flow_small = env.define(f"bench_noop_{small}", small)
    fns = bare_functions(env, flow)
    setup_commit()
    for _ in range(3):  # warm-up: compile cache, statement caches, first-run paths
        time_engine_run(env, flow)
        time_engine_run(env, flow_small)
    engine: list[float] = []
    engine_small: list[float] = []
    bare: list[float] = []
    plain: list[float] = []
    immediate: list[float] = []
    dbapi: list[float] = []
    per_op: list[float] = []
    overhead: list[float] = []
    ratios: list[float] = []
    driver_ratios: list[float] = []
    for _ in range(rounds):
        engine.append(time_engine_run(env, flow))
        engine_small.append(time_engine_run(env, flow_small))
        bare.append(time_bare(fns, 20))
        batch = time_commits(commit_plain, commits_per_round)
        per_op += batch
        plain.append(mean(batch))
        immediate.append(mean(time_commits(commit_immediate, commits_per_round)))
        dbapi.append(mean(time_commits(commit_dbapi, commits_per_round)))
        overhead.append((engine[-1] - bare[-1]) / steps)
        ratios.append(overhead[-1] / plain[-1])
        driver_ratios.append(overhead[-1] / dbapi[-1])
    _raw.pop("cursor").close()
    _raw.pop("conn").close()
    _raw.clear()
    t_engine, t_small, t_bare = median(engine), median(engine_small), median(bare)
    slopes = [(e - s) / (steps - small) for e, s in zip(engine, engine_small, strict=True)]
    fixed = [e - slope * steps for e, slope in zip(engine, slopes, strict=True)]
    step = {
        "steps": steps,
        "rounds": rounds,
        "engine_run_ms": t_engine * 1e3,
        "bare_run_us": t_bare * 1e6,
        "database": db.engine.dialect.name,
        "per_step_overhead_us": median(overhead) * 1e6,
        "ratio_to_commit": median(ratios),
        "ratio_to_driver_commit": median(driver_ratios),
        "marginal_step_us": median(slopes) * 1e6,
        "fixed_run_us": median(fixed) * 1e6,
        "small_steps": small,
        "engine_small_run_ms": t_small * 1e3,
        "engine_run_ms_all": [round(t * 1e3, 3) for t in engine],
        "engine_small_run_ms_all": [round(t * 1e3, 3) for t in engine_small],
        "per_round_ratio_to_commit": [round(r, 3) for r in ratios],
    }
    commit = {
        "commit_us": median(plain) * 1e6,
        "commit_immediate_us": median(immediate) * 1e6,
        "commit_dbapi_us": median(dbapi) * 1e6,
        "commit_per_op_median_us": median(per_op) * 1e6,
        "commit_per_op_p90_us": sorted(per_op)[int(len(per_op) * 0.9)] * 1e6,
        "commits_per_round": commits_per_round,
        "commit_us_all": [round(t * 1e6, 1) for t in plain],
    }
    return step, commit


def measure_breakdown(env: BenchEnv, steps: int, reps: int) -> dict[str, Any]:
    """Where a run's time goes, by wrapping (in this process only, for this pass only) the
    engine's parts: per run the claim, the heartbeat thread and the final transaction; per
    step the checkpoint transaction, the step call and the compiled-code lookup. The rest is
    ``Runner.drive`` itself (the four reads, the loop, building ``ctx``). A wrapper costs
    about a microsecond a call."""
    flow = env.define(f"bench_noop_{steps}", steps)
    spent: dict[str, float] = {}
    per_run = {
        "claim_run": (domain, "claim_run"),
        "finish_run": (domain, "finish_run"),
        "Heartbeat thread start+stop": (jobs, "Heartbeat"),
    }
    per_step = {
        "record_step_completed (checkpoint txn)": (domain, "record_step_completed"),
        "Sandbox.execute (the step in its step process)": (Sandbox, "execute"),
    }
    targets = {**per_run, **per_step}
    originals = {label: getattr(module, attr) for label, (module, attr) in targets.items()}

    def wrap(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = perf()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + perf() - t0

        return timed

    heartbeat_label = "Heartbeat thread start+stop"
    heartbeat_cls = originals[heartbeat_label]

    class TimedHeartbeat:
        def __init__(self, *args: Any) -> None:
            self.inner = heartbeat_cls(*args)

        def __enter__(self) -> Any:
            t0 = perf()
            try:
                return self.inner.__enter__()
            finally:
                spent[heartbeat_label] = spent.get(heartbeat_label, 0.0) + perf() - t0

        def __exit__(self, *exc: Any) -> None:
            t0 = perf()
            try:
                self.inner.__exit__(*exc)
            finally:
                spent[heartbeat_label] = spent.get(heartbeat_label, 0.0) + perf() - t0

    try:
        for label, (module, attr) in targets.items():
            if label == heartbeat_label:
                module.Heartbeat = TimedHeartbeat  # type: ignore[attr-defined]
            else:
                setattr(module, attr, wrap(label, originals[label]))
        time_engine_run(env, flow)  # warm-up
        spent.clear()
        totals = [time_engine_run(env, flow) for _ in range(reps)]
    finally:
        for label, (module, attr) in targets.items():
            setattr(module, attr, originals[label])
    total = sum(totals)
    parts = {label: spent.get(label, 0.0) / reps * 1e6 for label in targets}
    parts["Runner.drive itself (4 reads, loop, ctx, outcome)"] = total / reps * 1e6 - sum(
        parts.values()
    )
    return {
        "steps": steps,
        "reps": reps,
        "run_us": total / reps * 1e6,
        "parts_us_per_run": parts,
        "per_step_labels": list(per_step),
    }


# ------------------------------------------------------------------------- (c) replay cost


def crash(run_id: str) -> None:
    """Put a run back where a worker that died mid-run leaves it: running on an expired
    lease (its checkpoints stay), so that the next ``advance()`` claims it and replays."""
    db.session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(
            status="running",
            lease_owner="bench:dead-worker",
            lease_expires_at=utcnow() - timedelta(seconds=1),
            finished_at=None,
            output=None,
        )
    )
    db.session.commit()


def time_replay(run_id: str) -> float:
    crash(run_id)
    with no_gc():
        t0 = perf()
        status = Runner(run_id).advance()
        elapsed = perf() - t0
    db.session.remove()
    if status != "completed":
        raise RuntimeError(f"replayed run {run_id} ended {status!r}, expected completed")
    return elapsed


def measure_replay(env: BenchEnv, sizes: list[int], reps: int) -> dict[str, Any]:
    """Replay runs whose steps are all completed, at several sizes, in rounds that replay
    each size once. A round's slope of time against the number of completed steps is the
    cost of one replayed step (one more row in the checkpoint query, one skip in the loop),
    its intercept the fixed cost of a replay (claim, reads, finish); medians over rounds."""
    runs = {}
    for size in sizes:
        flow = env.define(f"bench_noop_{size}", size)
        run_id = env.new_run(flow)
        if Runner(run_id).advance() != "completed":
            raise RuntimeError("could not complete the run to replay")
        db.session.remove()
        executed = verify_nothing_executes(run_id)
        if executed:
            raise RuntimeError(f"a replay executed {executed} completed step(s)")
        rows = db.session.scalar(
            select(func.count())
            .select_from(StepRun)
            .where(StepRun.run_id == run_id, StepRun.status == "completed")
        )
        db.session.commit()
        if rows != size:
            raise RuntimeError(f"run {run_id}: {rows} completed steps, expected {size}")
        for _ in range(3):
            time_replay(run_id)
        runs[size] = run_id
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    slopes, intercepts = [], []
    for _ in range(reps):
        for size in sizes:
            samples[size].append(time_replay(runs[size]))
        slope, intercept = linear_fit(sizes, [samples[size][-1] for size in sizes])
        slopes.append(slope)
        intercepts.append(intercept)
    medians = {size: median(v) for size, v in samples.items()}
    largest = max(sizes)
    return {
        "sizes": sizes,
        "reps": reps,
        "replay_ms_by_size": {str(k): v * 1e3 for k, v in medians.items()},
        "run_10_ms": medians[10] * 1e3 if 10 in medians else None,
        "per_completed_step_us": median(slopes) * 1e6,
        "fixed_replay_us": median(intercepts) * 1e6,
        "slope_of_medians_us": linear_fit(sizes, list(medians.values()))[0] * 1e6,
        "amortized_per_step_us_at_largest": medians[largest] / largest * 1e6,
        "per_round_slope_us": [round(x * 1e6, 2) for x in slopes],
    }


def verify_nothing_executes(run_id: str) -> int:
    """Replay once with the sandbox's executions counted: a replay of a finished run executes
    nothing."""
    original = Sandbox.execute
    count = 0

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        return original(*args, **kwargs)

    Sandbox.execute = counting  # type: ignore[method-assign]
    try:
        time_replay(run_id)
    finally:
        Sandbox.execute = original  # type: ignore[method-assign]
    return count


# ------------------------------------------------------------------------------ profiling


def profile_engine(env: BenchEnv, steps: int, runs: int, top: int = 30) -> str:
    import cProfile
    import io
    import pstats

    flow = env.define(f"bench_noop_{steps}", steps)
    time_engine_run(env, flow)
    ids = [env.new_run(flow) for _ in range(runs)]
    profiler = cProfile.Profile()
    profiler.enable()
    for run_id in ids:
        Runner(run_id).advance()
        db.session.remove()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write(f"cProfile of {runs} runs x {steps} no-op steps (Runner.advance)\n")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    log("profile done")
    return out.getvalue()
