"""(b) Throughput through RQ: 10-step no-op runs against raw no-op RQ jobs, with the same
number of real worker processes in burst mode.

The console's worker no longer forks a work-horse per job (steps run in the step sandbox),
so the ``forking`` configurations compare it against raw RQ's forking worker: engine runs are
drained by ``flask worker --burst`` (``ConsoleWorker``), raw jobs by ``rq worker --burst``
(RQ's stock ``rq.Worker``, a fork per job). The ``simple`` configurations drain both with
``flask worker --simple --burst`` (``SimpleConsoleWorker``).

A batch is enqueued first (runs through ``console.runs.start_run``, the product's own path;
raw jobs with the same enqueue options as ``enqueue_run``), then the workers start and drain
it. The rate is taken from the jobs' own RQ timestamps, so that process start-up (importing
the app, ~1 s) is not counted:

* ``span``: jobs / (last ``ended_at`` - first ``started_at``);
* ``steady`` (the headline): the rate while every worker is busy, from the moment the last
  worker took its first job to the moment the first worker finished its last job. With one
  worker both are the same. It removes the start-up stagger between workers.

The wall time from starting the workers to their exit is kept in the JSON as well.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rq.job import Job, JobStatus
from sqlalchemy import func, select

import console.runs as domain
from console.extensions import db
from console.models import Run
from console.queueing import JOB_OPTIONS

from .harness import ROOT, BenchEnv, Flow, log, median

RAW_JOB = "bench.jobs.noop"
# The options of ``enqueue_run``, except a result TTL long enough to read timestamps back.
ENQUEUE_OPTIONS: dict[str, Any] = dict(JOB_OPTIONS, result_ttl=300)


def enqueue_runs(env: BenchEnv, flow: Flow, count: int) -> tuple[list[str], list[str]]:
    workflow = env.workflow(flow)
    run_ids = []
    for _ in range(count):
        run, created = domain.start_run(workflow, {}, trigger="bench")
        assert created
        run_ids.append(run.id)
    job_ids = [str(j) for j in db.session.scalars(select(Run.job_id).where(Run.id.in_(run_ids)))]
    db.session.commit()
    db.session.expunge_all()
    return run_ids, job_ids


def enqueue_raw(env: BenchEnv, count: int) -> list[str]:
    queue = env.queue()
    return [queue.enqueue(RAW_JOB, **ENQUEUE_OPTIONS).id for _ in range(count)]


def start_rq_worker(env: BenchEnv) -> Any:
    """Raw RQ's forking worker (``rq.Worker``: a work-horse forked per job) on the run queue."""
    rq = str(Path(sys.executable).parent / "rq")
    args = [rq, "worker", "--burst", "--url", env.env["REDIS_URL"], "--path", str(ROOT)]
    return env.start_process("rq-worker", [*args, env.env["RUN_QUEUE"]])


def rates(jobs: list[Job]) -> dict[str, Any]:
    spans = []
    for j in jobs:
        assert j.started_at is not None and j.ended_at is not None, j.id
        spans.append((j.started_at.timestamp(), j.ended_at.timestamp(), j.worker_name))
    first = min(s for s, _, _ in spans)
    last = max(e for _, e, _ in spans)
    result: dict[str, Any] = {"span_s": last - first, "span_per_s": len(jobs) / (last - first)}
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for start, end, worker in spans:
        by_worker.setdefault(worker or "?", []).append((start, end))
    result["jobs_by_worker"] = sorted(len(v) for v in by_worker.values())
    result["worker_first_job_offset_s"] = sorted(
        round(min(s for s, _ in v) - first, 3) for v in by_worker.values()
    )
    busy_from = max(min(s for s, _ in v) for v in by_worker.values())
    busy_until = min(max(e for _, e in v) for v in by_worker.values())
    inside = [1 for s, e, _ in spans if s >= busy_from and e <= busy_until]
    if len(by_worker) > 1 and busy_until > busy_from and len(inside) >= len(jobs) // 2:
        result["steady_per_s"] = len(inside) / (busy_until - busy_from)
        result["steady_jobs"] = len(inside)
    else:
        result["steady_per_s"] = result["span_per_s"]
        result["steady_jobs"] = len(jobs)
    return result


def batch(
    env: BenchEnv, kind: str, simple: bool, workers: int, count: int, flow: Flow
) -> dict[str, Any]:
    if kind == "engine":
        run_ids, job_ids = enqueue_runs(env, flow, count)
    else:
        run_ids, job_ids = [], enqueue_raw(env, count)
    db.session.remove()  # hold no connection to the database while the workers write
    t0 = time.perf_counter()
    if kind == "raw" and not simple:
        procs = [start_rq_worker(env) for _ in range(workers)]
    else:
        procs = [env.start_worker(simple) for _ in range(workers)]
    env.wait_workers(procs, timeout=max(120.0, count * 0.5))
    wall = time.perf_counter() - t0
    jobs = Job.fetch_many(job_ids, connection=env.redis())
    missing = sum(1 for j in jobs if j is None)
    unfinished = [j.id for j in jobs if j is not None and j.get_status() != JobStatus.FINISHED]
    if missing or unfinished:
        raise RuntimeError(
            f"{kind} batch: {missing} job(s) expired, {len(unfinished)} not "
            f"finished (e.g. {unfinished[:3]}); logs in {env.logs}"
        )
    if run_ids:
        done = db.session.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.id.in_(run_ids), Run.status == "completed")
        )
        db.session.commit()
        if done != len(run_ids):
            raise RuntimeError(f"only {done} of {len(run_ids)} runs completed")
    result = rates([j for j in jobs if j is not None])
    result["wall_s"] = wall
    result["count"] = count
    return result


def measure_throughput(
    env: BenchEnv,
    *,
    batches: dict[str, dict[str, int]],
    reps: int,
    worker_counts: list[int],
    simple_too: bool,
    engine_steps: int = 10,
) -> dict[str, Any]:
    flow = env.define(f"bench_noop_{engine_steps}", engine_steps)
    classes = [("forking", False)] + ([("simple", True)] if simple_too else [])
    out: dict[str, Any] = {
        "engine_steps": engine_steps,
        "batches": batches,
        "reps": reps,
        "configs": {},
    }
    samples: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for rep in range(reps):
        for cls_name, simple in classes:
            for workers in worker_counts:
                for kind in ("engine", "raw"):
                    count = batches[cls_name][kind]
                    res = batch(env, kind, simple, workers, count, flow)
                    samples.setdefault((cls_name, workers, kind), []).append(res)
                    log(
                        f"throughput rep {rep + 1}/{reps} {cls_name} x{workers} {kind}: "
                        f"{res['steady_per_s']:.1f}/s (span {res['span_per_s']:.1f}/s, "
                        f"wall {res['wall_s']:.2f} s, per worker {res['jobs_by_worker']}, "
                        f"workers' first job at +{res['worker_first_job_offset_s']} s)"
                    )
    for cls_name, _ in classes:
        for workers in worker_counts:
            eng = samples[(cls_name, workers, "engine")]
            raw = samples[(cls_name, workers, "raw")]
            e_rate = median([r["steady_per_s"] for r in eng])
            r_rate = median([r["steady_per_s"] for r in raw])
            out["configs"][f"{cls_name}_x{workers}"] = {
                "worker_class": "ConsoleWorker" if cls_name == "forking" else "SimpleConsoleWorker",
                "raw_worker_class": "rq.Worker (forks per job)"
                if cls_name == "forking"
                else "SimpleConsoleWorker",
                "workers": workers,
                "engine_runs_per_s": e_rate,
                "raw_jobs_per_s": r_rate,
                "ratio": e_rate / r_rate,
                "engine_steps_per_s": e_rate * engine_steps,
                "engine_span_runs_per_s": median([r["span_per_s"] for r in eng]),
                "raw_span_jobs_per_s": median([r["span_per_s"] for r in raw]),
                "engine_samples": eng,
                "raw_samples": raw,
            }
    return out
