"""(e) Journals: exporting and recovering the journal of a 100-step run with 1,000 task
results, and what recording each execution's reads and content hash adds to a checkpoint.

The run is executed for real by the engine (in this process, steps in the sandbox); the
recovery is timed up to the recorded, queued run (validation, pinning, the seeded rows) and
then the recovered run's finish, which replays its 100 reused steps.
"""

from __future__ import annotations

import json
import time
from typing import Any

import console.runs as domain
from console.extensions import db
from console.timeutil import utcnow
from workers.jobs import Runner

from .harness import BenchEnv, log, median

perf = time.perf_counter

TASKS_CODE = """\
def run(ctx):
    return sum(ctx.task(f"t{i}", lambda i=i: i) for i in range(10))
"""


class CommandLineUser:
    email = "bench"

    @staticmethod
    def has_role(role: str) -> bool:
        return True


def measure_journal(env: BenchEnv, steps: int, reps: int) -> dict[str, Any]:
    flow = env.define("bench_journal", steps, code=TASKS_CODE)
    run_id = env.new_run(flow)
    started = perf()
    if Runner(run_id).advance() != "completed":
        raise RuntimeError("could not complete the run to export")
    executed_s = perf() - started
    exports, sizes, recovers, finishes = [], [], [], []
    journal: dict[str, Any] = {}
    for _ in range(reps):
        db.session.remove()
        t0 = perf()
        journal = domain.build_journal(run_id)
        text = json.dumps(journal)
        exports.append(perf() - t0)
        sizes.append(len(text))
        db.session.commit()
        t0 = perf()
        new, _ = domain.recover_journal(json.loads(text), CommandLineUser())
        recovers.append(perf() - t0)
        new_id = new.id
        db.session.remove()
        t0 = perf()
        if Runner(new_id).advance() != "completed":
            raise RuntimeError("the recovered run did not complete")
        finishes.append(perf() - t0)
    tasks = sum(1 for e in journal["entries"] if e["type"] == "task")
    if tasks != steps * 10:
        raise RuntimeError(f"the journal holds {tasks} task results, expected {steps * 10}")
    log(f"    journal of {steps} steps, {tasks} tasks: {median(exports) * 1e3:.1f} ms export")
    return {
        "steps": steps,
        "task_results": tasks,
        "entries": len(journal["entries"]),
        "reps": reps,
        "run_executed_ms": executed_s * 1e3,
        "journal_bytes": int(median(sizes)),
        "export_ms": median(exports) * 1e3,
        "recover_ms": median(recovers) * 1e3,
        "recovered_finish_ms": median(finishes) * 1e3,
        "reads_and_hash_us": measure_reads_cost(env, 400 if reps < 5 else 1000),
    }


def measure_reads_cost(env: BenchEnv, n: int) -> dict[str, float]:
    """Checkpoints of the same step with and without a content hash and reads, interleaved
    in rounds of 20 so that drift hits both alike: the median extra per checkpoint."""
    flow = env.define("bench_reads", 1)
    reads = {"input": ["a", "b"], "steps": ["s000"]}
    digest = "0" * 64
    plain: list[float] = []
    recorded: list[float] = []
    for i in range(n // 20):
        for with_reads in (False, True) if i % 2 == 0 else (True, False):
            samples = recorded if with_reads else plain
            for _ in range(10):
                run_id = env.new_run(flow)
                claim = domain.take_run(run_id, "bench")
                assert claim is not None
                now = utcnow()
                outcome = domain.StepOutcome(
                    name="s000",
                    position=0,
                    status="completed",
                    started_at=now,
                    finished_at=now,
                    attempts=1,
                    content_hash=digest if with_reads else None,
                    reads=reads if with_reads else None,
                )
                t0 = perf()
                domain.record_step_completed(claim, outcome, 1, [])
                samples.append(perf() - t0)
    base, extra = median(plain), median(recorded)
    return {
        "checkpoint_us": base * 1e6,
        "checkpoint_with_reads_us": extra * 1e6,
        "extra_us": (extra - base) * 1e6,
    }
