"""What-if measurements behind the profiling notes of ``bench/README.md``:
``python -m bench.experiments``.

They do not change the engine: each one re-creates a piece of the engine's work outside it,
in several ways, on the benchmark's own temporary database, to show what a change would buy.

1. checkpoint: the per-step checkpoint transaction of ``record_step_completed`` (fence UPDATE
   ... RETURNING + step INSERT + COMMIT) as the engine does it, then with
   ``synchronize_session=False`` and a Core INSERT, then with statements built once with
   bind parameters (through the session's connection, and on a held Connection), then as
   raw DB-API calls (the floor).
2. replay_read: the checkpoint query of a replay through the ORM session against the same
   query through the driver, per row.
3. horse: a forked work-horse's first (only) run, with the worker parent as ``flask worker``
   leaves it (cold), after one warm-up run in the parent (warm: mappers configured, modules
   imported, SQL compiled), and after that plus ``gc.freeze()`` (warm+freeze).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from console import runs as domain
from console.extensions import db, write_transaction
from console.models import TERMINAL, Run, StepRun
from console.timeutil import utcnow
from workers.jobs import Runner

from .harness import ROOT, BenchEnv, log, median

perf = time.perf_counter


def _timed(fn: Callable[[], Any], count: int, rounds: int) -> list[float]:
    per_round = []
    for _ in range(rounds):
        for _ in range(10):
            fn()
        samples = []
        gc.collect()
        gc.disable()
        try:
            for _ in range(count):
                t0 = perf()
                fn()
                samples.append(perf() - t0)
        finally:
            gc.enable()
        per_round.append(median(samples))
    return per_round


def checkpoint(env: BenchEnv, count: int = 200, rounds: int = 5) -> dict[str, float]:
    flow = env.define("exp_checkpoint", 1)
    run_id = env.new_run(flow)
    owner = "bench:experiment"
    assert domain.claim_run(run_id, owner)
    claim = domain.Claim(run_id, owner)
    seq = [0]

    def outcome() -> domain.StepOutcome:
        seq[0] += 1
        now = utcnow()
        return domain.StepOutcome(
            name=f"x{seq[0]}",
            position=seq[0],
            status="completed",
            started_at=now,
            finished_at=now,
            attempts=1,
        )

    def row(o: domain.StepOutcome) -> dict[str, Any]:
        return {
            "status": "completed",
            "output": None,
            "error": None,
            "attempts": 1,
            "started_at": o.started_at,
            "finished_at": o.finished_at,
            "duration_ms": 0,
            "run_id": run_id,
            "name": o.name,
            "position": o.position,
        }

    def engine_as_is() -> None:
        o = outcome()
        assert domain.record_step_completed(claim, o, o.position + 1, []) == "running"

    def no_sync_core_insert() -> None:
        o, now = outcome(), utcnow()
        write_transaction()
        status = db.session.execute(
            update(Run)
            .where(Run.id == run_id, Run.lease_owner == owner, Run.status.not_in(tuple(TERMINAL)))
            .values(
                lease_expires_at=now + timedelta(seconds=30),
                updated_at=now,
                current_step=o.position + 1,
                compute_ms=Run.compute_ms + 0,
            )
            .returning(Run.status)
            .execution_options(synchronize_session=False)
        ).scalar()
        db.session.connection().execute(insert(StepRun.__table__), [row(o)])
        db.session.commit()
        assert status == "running"

    runs, steps = Run.__table__, StepRun.__table__
    fence = (
        update(runs)
        .where(
            runs.c.id == bindparam("rid"),
            runs.c.lease_owner == bindparam("owner"),
            runs.c.status.not_in(tuple(TERMINAL)),
        )
        .values(
            lease_expires_at=bindparam("lease"),
            updated_at=bindparam("now"),
            current_step=bindparam("next"),
            compute_ms=runs.c.compute_ms + bindparam("compute"),
        )
        .returning(runs.c.status)
    )
    step_insert = insert(steps)

    def params(o: domain.StepOutcome, now: Any) -> dict[str, Any]:
        return {
            "rid": run_id,
            "owner": owner,
            "lease": now + timedelta(seconds=30),
            "now": now,
            "next": o.position + 1,
            "compute": 0,
        }

    def prebuilt_session() -> None:
        o, now = outcome(), utcnow()
        write_transaction()
        conn = db.session.connection()
        status = conn.execute(fence, params(o, now)).scalar()
        conn.execute(step_insert, [row(o)])
        db.session.commit()
        assert status == "running"

    held = db.engine.connect().execution_options(sqlite_immediate=True)

    def prebuilt_held_connection() -> None:
        o, now = outcome(), utcnow()
        with held.begin():
            status = held.execute(fence, params(o, now)).scalar()
            held.execute(step_insert, [row(o)])
        assert status == "running"

    raw = db.engine.raw_connection()
    cursor = raw.cursor()

    def raw_dbapi() -> None:
        o = outcome()
        now = str(utcnow().replace(tzinfo=None))
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute(
            "UPDATE runs SET lease_expires_at = ?, updated_at = ?, current_step = ?, "
            "compute_ms = compute_ms + ? WHERE id = ? AND lease_owner = ? "
            "AND status NOT IN ('completed', 'failed', 'canceled') RETURNING status",
            (now, now, o.position + 1, 0, run_id, owner),
        )
        status = cursor.fetchone()[0]  # type: ignore[index]
        cursor.execute(
            "INSERT INTO step_runs (run_id, name, position, status, output, error, attempts, "
            "runs, timed_out, started_at, finished_at, duration_ms) "
            "VALUES (?, ?, ?, 'completed', NULL, NULL, 1, 1, 0, ?, ?, 0)",
            (run_id, o.name, o.position, now, now),
        )
        cursor.execute("COMMIT")
        assert status == "running"

    variants = {
        "engine as is (record_step_completed)": engine_as_is,
        "synchronize_session=False + Core INSERT": no_sync_core_insert,
        "statements built once (bindparam), session connection": prebuilt_session,
        "statements built once, on a held Connection": prebuilt_held_connection,
        "raw DB-API, same SQL (the floor)": raw_dbapi,
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(rounds):  # interleaved, so that each sees the same machine
            for name, fn in variants.items():
                samples[name] += _timed(fn, count // rounds or 1, 1)
    finally:
        held.close()
        raw.close()
    return {name: median(v) * 1e6 for name, v in samples.items()}


def replay_read(env: BenchEnv, sizes: tuple[int, int] = (10, 200)) -> dict[str, float]:
    results: dict[str, dict[int, float]] = {"orm": {}, "driver": {}}
    for size in sizes:
        flow = env.define(f"bench_noop_{size}", size)
        run_id = env.new_run(flow)
        Runner(run_id).advance()
        db.session.remove()

        def orm(run_id: str = run_id) -> None:
            _ = {
                r.name: r
                for r in db.session.execute(
                    select(
                        StepRun.name,
                        StepRun.status,
                        StepRun.output,
                        StepRun.resume_data,
                        StepRun.timed_out,
                        StepRun.attempts,
                        StepRun.runs,
                    ).where(StepRun.run_id == run_id)
                )
            }
            db.session.commit()

        def driver(run_id: str = run_id) -> None:
            cur = db.session.connection().exec_driver_sql(
                "SELECT name, status, output, resume_data, timed_out, attempts, runs "
                "FROM step_runs WHERE run_id = ?",
                (run_id,),
            )
            _ = {r[0]: r for r in cur.fetchall()}
            db.session.commit()

        results["orm"][size] = median(_timed(orm, 100, 3))
        results["driver"][size] = median(_timed(driver, 100, 3))
    lo, hi = sizes
    return {f"{kind} per row": (v[hi] - v[lo]) / (hi - lo) * 1e6 for kind, v in results.items()}


HORSE = r"""
import gc, json, os, sys, time
mode, ids = sys.argv[1], sys.argv[2:]
from console import create_app
from console.extensions import db
from workers.app import set_app
app = create_app()
set_app(app)
def drop():
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
drop()  # what `flask worker` does before work()
if mode.startswith("warm"):
    from workers.jobs import advance_run
    advance_run(ids.pop(0))
    drop()
if mode == "warm+freeze":
    gc.collect()
    gc.freeze()
out = []
for run_id in ids:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        t0 = time.perf_counter()
        from workers.jobs import advance_run
        status = advance_run(run_id)
        os.write(w, json.dumps([status, time.perf_counter() - t0]).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.waitpid(pid, 0)
    out.append(json.loads(data))
print(json.dumps(out))
"""


def horse(env: BenchEnv, per_mode: int = 8, rounds: int = 2) -> dict[str, float]:
    flow = env.define("bench_noop_10", 10)
    samples: dict[str, list[float]] = {"cold": [], "warm": [], "warm+freeze": []}
    for _ in range(rounds):
        for mode in samples:
            ids = [env.new_run(flow) for _ in range(per_mode + mode.startswith("warm"))]
            db.session.remove()
            proc = subprocess.run(
                [sys.executable, "-c", HORSE, mode, *ids],
                cwd=ROOT,
                env=dict(os.environ, **env.env),
                capture_output=True,
                text=True,
                check=True,
            )
            for status, seconds in json.loads(proc.stdout.strip().splitlines()[-1]):
                assert status == "completed", status
                samples[mode].append(seconds)
    return {
        f"{mode}: 10-step run in a fresh horse (ms)": median(v) * 1e3 for mode, v in samples.items()
    }


def main() -> int:
    with BenchEnv() as env:
        log("checkpoint variants ...")
        sections = {"checkpoint transaction (us)": checkpoint(env)}
        log("replay read ...")
        sections["replay checkpoint query (us)"] = replay_read(env)
        log("forked horse, cold vs warm parent ...")
        sections["forked work-horse"] = horse(env)
    for title, values in sections.items():
        print(title)
        for name, value in values.items():
            print(f"  {value:9.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
