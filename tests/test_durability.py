"""Durability with real processes: real ``flask worker`` / ``flask scheduler`` subprocesses, the
real embedded Redis and both database backends, no mocks (docs/runs.md#durability, and
``ctx.task`` in docs/steps.md).

Steps write their side effects to a file named in the run's input, one line per execution, so
that the tests can count how many times each piece of step code really ran, across processes
and kills.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rq import Queue, Worker
from rq.job import Job
from sqlalchemy import func, select

from console.extensions import db
from console.models import Run, StepRun, TaskResult
from console.queueing import enqueue_run
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

TIMEOUT = 60.0

# A step that appends "<tag>" to the side-effect file, then returns ``value`` (an expression).
STEP = """\
import os, time

def run(ctx):
    with open(ctx.input["log"], "a") as f:
        f.write({tag} + "\\n")
{extra}    return {value}
"""


def code(tag: str, value: str = "None", extra: str = "") -> str:
    return STEP.format(tag=tag, value=value, extra=extra)


def side_effects(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def query(stmt: Any) -> list[Any]:
    """Fresh rows (the worker processes write; end our transaction so we see their commits)."""
    db.session.commit()  # a transaction left open (e.g. by a request) would be a stale snapshot
    db.session.expire_all()
    rows = list(db.session.execute(stmt).all())
    db.session.commit()
    return rows


def step_rows(run_id: str) -> dict[str, tuple[str, int, Any]]:
    """name -> (status, number of rows with that name, output)."""
    counts = dict(
        query(
            select(StepRun.name, func.count())
            .where(StepRun.run_id == run_id)
            .group_by(StepRun.name)
        )
    )
    return {
        r.name: (r.status, counts[r.name], r.output)
        for r in query(
            select(StepRun.name, StepRun.status, StepRun.output).where(StepRun.run_id == run_id)
        )
    }


def get_run(run_id: str) -> Any:
    return query(
        select(Run.status, Run.output, Run.error, Run.lease_owner, Run.current_step).where(
            Run.id == run_id
        )
    )[0]


class Waiter:
    """``wait_for`` whose failure shows the worker and scheduler logs and the run's state."""

    def __init__(self, processes: Any) -> None:
        self.processes = processes

    def __call__(self, predicate: Callable[[], Any], message: str, timeout: float = TIMEOUT) -> Any:
        try:
            return wait_for(predicate, timeout=timeout, interval=0.05, message=message)
        except AssertionError as exc:
            runs = query(
                select(
                    Run.id,
                    Run.status,
                    Run.current_step,
                    Run.lease_owner,
                    Run.lease_expires_at,
                    Run.job_id,
                    Run.error,
                )
            )
            raise AssertionError(f"{exc}\nruns: {runs}\n{self.processes.output()}") from None

    def status(self, run_id: str, status: str = "completed") -> None:
        self(lambda: get_run(run_id).status == status, f"run {run_id} to be {status}")


def start(api: Any, workflow: str, **input: Any) -> str:
    response = api.post(f"/api/workflows/{workflow}/runs", json={"input": input})
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def ten_steps(blocking_step: int | None = None) -> list[tuple[str, str]]:
    """s1..s10; step i outputs the previous output + i. The blocking step waits for the file
    named by ``input["release"]`` after writing its side effect."""
    steps = []
    for i in range(1, 11):
        value = "ctx.input['start']" if i == 1 else f"ctx.steps['s{i - 1}'].output"
        extra = ""
        if i == blocking_step:
            extra = (
                "    while not os.path.exists(ctx.input['release']):\n        time.sleep(0.05)\n"
            )
        steps.append((f"s{i}", code(f"'s{i}'", f"{value} + {i}", extra)))
    return steps


def test_ten_step_workflow_completes_on_a_real_worker(app, define, api, processes, tmp_path):
    wait = Waiter(processes)
    log = tmp_path / "effects.txt"
    define("ten", ten_steps())
    processes.worker()
    run_id = start(api, "ten", log=str(log), start=100)

    wait.status(run_id)
    run = get_run(run_id)
    out = processes.output()
    assert run.output == 100 + 55, out
    assert run.error is None and run.lease_owner is None, out
    rows = step_rows(run_id)
    expected = {f"s{i}": ("completed", 1, 100 + sum(range(1, i + 1))) for i in range(1, 11)}
    assert rows == expected, out
    assert side_effects(log) == [f"s{i}" for i in range(1, 11)], out


def test_kill_9_during_a_step_replays_from_the_last_checkpoint(
    app, define, api, processes, tmp_path
):
    wait = Waiter(processes)
    log, release = tmp_path / "effects.txt", tmp_path / "release"
    define("killed", ten_steps(blocking_step=5))
    worker = processes.worker()
    run_id = start(api, "killed", log=str(log), release=str(release), start=0)

    wait(lambda: "s5" in side_effects(log), "step 5 to start")
    assert get_run(run_id).status == "running"
    processes.kill_tree(worker)  # the work-horse executing step 5, and the worker
    assert get_run(run_id).status == "running"  # only the lease's expiry will tell
    assert set(step_rows(run_id)) == {"s1", "s2", "s3", "s4"}
    release.touch()
    processes.worker()
    processes.scheduler()

    wait.status(run_id)
    out = processes.output()
    assert get_run(run_id).output == 55, out
    counts = Counter(side_effects(log))
    assert all(counts[f"s{i}"] == 1 for i in range(1, 5)), (counts, out)
    assert counts["s5"] == 2, (counts, out)  # the killed execution, then the replay
    assert all(counts[f"s{i}"] == 1 for i in range(6, 11)), (counts, out)
    rows = step_rows(run_id)
    assert rows == {f"s{i}": ("completed", 1, sum(range(1, i + 1))) for i in range(1, 11)}, out


def test_runs_pending_during_a_redis_flushall_complete(
    app, define, api, processes, tmp_path, redis_conn
):
    wait = Waiter(processes)
    log = tmp_path / "effects.txt"
    define("flushed", [(f"s{i}", code(f"ctx.run.id + ':s{i}'", str(i))) for i in (1, 2, 3)])
    run_ids = [start(api, "flushed", log=str(log)) for _ in range(5)]
    queue = Queue(app.config["RUN_QUEUE"], connection=redis_conn)
    assert queue.count == 5

    redis_conn.flushall()  # every job is gone; the database still says pending
    assert queue.count == 0
    assert all(get_run(r).status == "pending" for r in run_ids)
    processes.scheduler()
    processes.worker()

    for run_id in run_ids:
        wait.status(run_id)
    out = processes.output()
    assert all(get_run(r).output == 3 for r in run_ids), out
    expected = sorted(f"{r}:s{i}" for r in run_ids for i in (1, 2, 3))
    assert sorted(side_effects(log)) == expected, out  # each step of each run once
    for run_id in run_ids:
        assert step_rows(run_id) == {f"s{i}": ("completed", 1, i) for i in (1, 2, 3)}, out


def test_a_run_enqueued_many_times_on_two_workers_runs_once(
    app, define, api, processes, tmp_path, redis_conn
):
    wait = Waiter(processes)
    log = tmp_path / "effects.txt"
    steps = [(f"s{i}", code(f"'s{i}'", str(i), extra="    time.sleep(0.3)\n")) for i in range(1, 5)]
    steps.append(
        ("tasks", code("'tasks'", "[ctx.task(f't{i}', lambda i=i: i * 10) for i in range(3)]"))
    )
    define("dup", steps)
    processes.worker()
    processes.worker()
    wait(lambda: Worker.count(connection=redis_conn) == 2, "both workers to listen")

    run_id = start(api, "dup", log=str(log))
    job_ids = [get_run_job(run_id), enqueue_run(run_id)]  # the same run, twice, at once
    wait(lambda: "s2" in side_effects(log), "step 2 to start")
    job_ids.append(enqueue_run(run_id))  # and once more while a worker is executing it
    assert all(job_ids), job_ids

    wait.status(run_id)
    out = processes.output()
    wait(
        lambda: all(Job.fetch(j, connection=redis_conn).is_finished for j in job_ids),
        "every job to finish",
    )
    results = [Job.fetch(j, connection=redis_conn).return_value() for j in job_ids]
    # One job advanced the run to its end; the duplicates could not claim it.
    assert results.count("completed") == 1 and results.count(None) == 2, (results, out)
    # Both worker processes took a job for this run: they really competed for it.
    worker_logs = [p.read_text() for p in sorted(processes.logs.glob("worker-*.log"))]
    assert len(worker_logs) == 2 and all(run_id in text for text in worker_logs), out

    run = get_run(run_id)
    assert run.output == [0, 10, 20] and run.lease_owner is None, out
    assert side_effects(log) == ["s1", "s2", "s3", "s4", "tasks"], out
    expected = {f"s{i}": ("completed", 1, i) for i in range(1, 5)}
    expected["tasks"] = ("completed", 1, [0, 10, 20])
    assert step_rows(run_id) == expected, out
    tasks = query(
        select(TaskResult.step_name, TaskResult.key, TaskResult.result)
        .where(TaskResult.run_id == run_id)
        .order_by(TaskResult.key)
    )
    assert [tuple(t) for t in tasks] == [("tasks", f"t{i}", i * 10) for i in range(3)], out


def get_run_job(run_id: str) -> str:
    return str(query(select(Run.job_id).where(Run.id == run_id))[0].job_id)


TASK_LOOP = """\
import time

def run(ctx):
    def body(key, i):
        with open(ctx.input["log"], "a") as f:
            f.write(key + "\\n")
        time.sleep(0.02)
        return i * 2

    return sum(ctx.task(f"k{i}", body, f"k{i}", i) for i in range(100))
"""


def test_kill_9_in_a_task_loop_calls_each_task_once(app, define, api, processes, tmp_path):
    wait = Waiter(processes)
    log = tmp_path / "effects.txt"
    define("loop", [("loop", TASK_LOOP), ("after", code("'after'", "ctx.steps.loop.output"))])
    worker = processes.worker()
    run_id = start(api, "loop", log=str(log))

    wait(lambda: len(side_effects(log)) >= 50, "half of the tasks")
    processes.kill_tree(worker)
    recorded = {r.key for r in query(select(TaskResult.key).where(TaskResult.run_id == run_id))}
    assert 40 <= len(recorded) < 100, len(recorded)  # killed half-way indeed
    assert recorded == {f"k{i}" for i in range(len(recorded))}
    in_flight = f"k{len(recorded)}"  # its body may have run without its result being recorded
    processes.worker()
    processes.scheduler()

    wait.status(run_id)
    out = processes.output()
    assert get_run(run_id).output == sum(i * 2 for i in range(100)), out
    effects = side_effects(log)
    assert effects[-1] == "after" and effects.count("after") == 1, out
    counts = Counter(effects[:-1])
    keys = [f"k{i}" for i in range(100)]
    assert set(counts) == set(keys), out
    twice = [k for k, n in counts.items() if n > 1]
    assert set(twice) <= {in_flight} and counts[in_flight] <= 2, (in_flight, counts, out)
    tasks = query(select(TaskResult.key, TaskResult.result).where(TaskResult.run_id == run_id))
    assert len(tasks) == 100, out
    assert {t.key: t.result for t in tasks} == {f"k{i}": i * 2 for i in range(100)}, out
    expected = {"loop": ("completed", 1, 9900), "after": ("completed", 1, 9900)}
    assert step_rows(run_id) == expected, out


WAITING_STEP = """\
def run(ctx):
    with open(ctx.input["log"], "a") as f:
        f.write(ctx.run.id + ":enter\\n")
    ctx.wait("pause", 2)
    return "woke"
"""


@pytest.mark.slow
def test_timers_survive_a_redis_flushall(app, define, api, processes, tmp_path, redis_conn):
    """Sleeping runs keep their wake-up time in the database: after FLUSHALL the scheduler
    still wakes them, once each, and not before their time."""
    wait = Waiter(processes)
    log = tmp_path / "effects.txt"
    define("sleepy", [("nap", WAITING_STEP), ("after", code("'after'", "'done'"))])
    worker = processes.worker()
    run_ids = [start(api, "sleepy", log=str(log)) for _ in range(3)]
    wait(lambda: all(get_run(r).status == "sleeping" for r in run_ids), "runs to sleep")
    wake_times = {r: query(select(Run.wake_at).where(Run.id == r))[0].wake_at for r in run_ids}
    processes.kill_tree(worker)
    # The scheduler delivers each due timer as a job in Redis; then Redis loses them all.
    scheduler = processes.scheduler()

    def delivered() -> bool:
        rows = query(select(Run.enqueued_at, Run.wake_at).where(Run.id.in_(run_ids)))
        return all(r.enqueued_at and r.enqueued_at >= r.wake_at for r in rows)

    wait(delivered, "the timers to be delivered to Redis")
    processes.kill_tree(scheduler)
    queued = Queue(app.config["RUN_QUEUE"], connection=redis_conn).jobs
    assert len(queued) == 3, ([j.description for j in queued], processes.output())
    redis_conn.flushall()
    processes.scheduler()
    processes.worker()

    for run_id in run_ids:
        wait.status(run_id)
    out = processes.output()
    for run_id in run_ids:
        run = get_run(run_id)
        assert run.output == "done", out
        rows = step_rows(run_id)
        assert rows["nap"] == ("completed", 1, "woke"), out
        # The step woke no earlier than its timer.
        finished = query(
            select(StepRun.finished_at).where(StepRun.run_id == run_id, StepRun.name == "nap")
        )[0].finished_at
        assert finished >= wake_times[run_id], out
    entries = side_effects(log)
    assert sorted(e for e in entries if e.endswith(":enter")) == sorted(
        f"{r}:enter" for r in run_ids for _ in (1, 2)
    ), out  # each step entered twice: before its wait and once after it
