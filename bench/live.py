"""``latency`` and ``memory``: the whole stack as real processes on loopback, as ``flask up``
runs it (gunicorn with the console's settings, one ``flask worker``, ``flask scheduler``), on
the benchmark's SQLite database and embedded Redis, driven over HTTP like a client would.

* ``run_10_steps``: ``POST /api/workflows/<name>/runs`` of a 10-step no-op run, then
  ``GET /api/runs/<id>`` every ``POLL_S`` until it answers ``completed``: the time from
  sending the POST to reading ``completed`` (the poll's granularity included).
* ``resume_to_next_step``: a run whose first step calls ``ctx.flow.suspend``; once the API
  shows it ``suspended`` with its links, ``POST`` its resume link (no credentials, as a
  service would) and read the wall-clock time at which the second step's code started (its
  return value): the time from sending the POST to that start.
* ``timer_lateness``: a step that calls ``ctx.wait("w", 1)`` and then returns
  ``time.time()``: the re-entered step's time minus the wake-up time the engine recorded for
  the wait (its ``__wait__/w`` task result). The runs start ``TIMER_SPACING_S`` apart.
* ``memory``: the worker process's resident set (``VmRSS``; its step processes beside it)
  idle after start, before any run; after the latency runs and a warm-up of 100 runs; and
  after ``runs`` 1-step no-op runs in all (after the warm-up, created in bulk as
  ``start_run`` records them, and enqueued with ``enqueue_run``'s options), drained while the
  benchmark seeds (d). Growth is against the idle figure (the aim), and against the warm one;
  the RSS is sampled every 2 s on the way.

The same clock serves both sides (one machine), so wall-clock differences are fair.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rq import Queue
from sqlalchemy import func, insert, select

import console.runs as domain
from console.auth import create_token, create_user
from console.definitions import save_workflow
from console.extensions import db
from console.ids import new_id
from console.models import Run, TaskResult, Workflow, WorkflowVersion
from console.queueing import JOB_OPTIONS, RUN_JOB, run_queue
from console.timeutil import utcnow
from workers.supervisor import web_command

from .harness import BenchEnv, log, median

POLL_S = 0.002
TIMER_SPACING_S = 0.35
RESUME_CODE = "def run(ctx):\n    ctx.flow.suspend(3600)\n    return None\n"
STARTED_CODE = "import time\n\n\ndef run(ctx):\n    return time.time()\n"
MEMORY_FLOW = "bench_live_1"
TIMER_CODE = "import time\n\n\ndef run(ctx):\n    ctx.wait('w', 1)\n    return time.time()\n"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    """A keep-alive HTTP client of the live web process."""

    def __init__(self, base: str, token: str | None) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token = token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()  # the server closed an idle keep-alive connection
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt == 2:
                    raise
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = raw.decode(errors="replace")
        return response.status, answer


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return children + [g for c in children for g in descendants(c)]


def tree_rss_kb(pid: int) -> int:
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):  # a step process that just ended
            total += rss_kb(p)
    return total


class Stack:
    def __init__(self, env: BenchEnv) -> None:
        self.env = env
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env.env["BASE_URL"] = self.base  # resume links point at this web process
        os.environ["BASE_URL"] = self.base
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        env.start_process("web", web_command(gunicorn, f"127.0.0.1:{port}"))
        self.worker = env.start_worker(simple=False, burst=False)
        env.start_process("scheduler", [sys.executable, "-m", "flask", "scheduler"])
        user, _ = create_user("bench-operator@example.com", "operator")
        self.api = Api(self.base, create_token(user, "bench"))
        self.anonymous = Api(self.base, None)
        self.until(lambda: self.health().get("workers", 0) >= 1, "the web server and a worker")

    def health(self) -> dict[str, Any]:
        try:
            status, body = self.anonymous.call("GET", "/healthz")
        except OSError:
            return {}
        return body if status in (200, 503) and isinstance(body, dict) else {}

    def until(self, predicate: Any, what: str, timeout: float = 60.0, poll: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        logs = "\n".join(self.env.worker_logs())
        raise RuntimeError(f"timed out waiting for {what}\n{logs}")

    def start(self, workflow: str) -> str:
        status, body = self.api.call("POST", f"/api/workflows/{workflow}/runs", {})
        if status != 202:
            raise RuntimeError(f"starting {workflow}: {status} {body}")
        return str(body["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        status, body = self.api.call("GET", f"/api/runs/{run_id}")
        if status != 200:
            raise RuntimeError(f"GET /api/runs/{run_id}: {status} {body}")
        if body["status"] in ("failed", "canceled"):
            raise RuntimeError(f"run {run_id} {body['status']}: {body.get('error')}")
        return dict(body)

    def completed(self, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
        found: dict[str, Any] = self.until(
            lambda: (r := self.run(run_id))["status"] == "completed" and r,
            f"run {run_id} to complete",
            timeout,
            POLL_S,
        )
        return found


def publish(name: str, codes: list[str]) -> None:
    steps = [{"name": f"s{i:03d}", "code": code} for i, code in enumerate(codes)]
    save_workflow({"name": name, "steps": steps})
    db.session.commit()


def percentiles(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": median(ordered) * 1e3, "p99_ms": p99 * 1e3, "n": len(ordered)}


def run_latency(stack: Stack) -> float:
    started = time.perf_counter()
    run_id = stack.start("bench_live_10")
    stack.completed(run_id)
    return time.perf_counter() - started


def resume_latency(stack: Stack) -> float:
    run_id = stack.start("bench_live_resume")
    found = stack.until(
        lambda: (r := stack.run(run_id)).get("links") and r, "a suspended run", 60, POLL_S
    )
    path = urlsplit(found["links"]["resume_url"]).path
    sent = time.time()
    status, body = stack.anonymous.call("POST", path, {})
    if status != 200:
        raise RuntimeError(f"POST {path}: {status} {body}")
    done = stack.completed(run_id)
    return float(done["steps"][1]["output"]) - sent


def timer_lateness(stack: Stack, count: int) -> list[float]:
    ids = []
    for _ in range(count):
        ids.append(stack.start("bench_live_timer"))
        time.sleep(TIMER_SPACING_S)
    late = []
    for run_id in ids:
        entered = float(stack.completed(run_id, 30)["steps"][0]["output"])
        recorded = db.session.scalar(
            select(TaskResult.result).where(
                TaskResult.run_id == run_id, TaskResult.key == domain.WAIT_PREFIX + "w"
            )
        )
        db.session.commit()
        assert recorded is not None, f"run {run_id} recorded no wake-up time"
        late.append(entered - datetime.fromisoformat(recorded["until"]).timestamp())
    return late


class MemoryBatch:
    """The live stack with its memory batch under way: ``finish`` waits for it, takes the
    worker's RSS and stops the stack."""

    def __init__(self, env: BenchEnv, stack: Stack, runs: int, idle: tuple[int, int]) -> None:
        self.env, self.stack, self.runs, self.idle = env, stack, runs, idle
        self.before = stack_runs(stack, MEMORY_FLOW, min(100, runs))  # the warm-up
        self.warm = (rss_kb(stack.worker.pid), tree_rss_kb(stack.worker.pid))
        self.curve: list[tuple[int, int]] = [(self.before, self.warm[0])]
        start_in_bulk(MEMORY_FLOW, runs - self.before)

    def finish(self) -> dict[str, Any]:
        try:
            pid = self.stack.worker.pid
            deadline = time.monotonic() + max(600.0, self.runs * 0.2)
            while (left := pending(MEMORY_FLOW)) > 0:
                if time.monotonic() > deadline or self.stack.worker.poll() is not None:
                    raise RuntimeError(f"the memory batch did not drain ({left} runs left)")
                self.curve.append((completed(MEMORY_FLOW), rss_kb(pid)))
                time.sleep(2.0)
            done = completed(MEMORY_FLOW)
            if done != self.runs:
                raise RuntimeError(f"{done} of the memory batch's {self.runs} runs completed")
            after, after_tree = rss_kb(pid), tree_rss_kb(pid)
        finally:
            self.env.stop_workers()
        (idle, idle_tree), (warm, warm_tree) = self.idle, self.warm
        self.curve.append((done, after))
        log(f"    memory: {idle / 1024:.0f} MiB idle, {after / 1024:.0f} MiB after {done:,} runs")
        return {
            "runs": done,
            "worker_rss_idle_kb": idle,
            "worker_rss_warm_kb": warm,
            "worker_rss_after_kb": after,
            "growth_pct": (after - idle) / idle * 100,
            "growth_after_warmup_pct": (after - warm) / warm * 100,
            "tree_rss_idle_kb": idle_tree,
            "tree_rss_warm_kb": warm_tree,
            "tree_rss_after_kb": after_tree,
            "rss_kb_by_runs": self.curve,
            "note": f"{MEMORY_FLOW}: 1-step no-op runs, after the latency runs",
        }


def measure_live(
    env: BenchEnv, runs: int, resumes: int, timers: int, memory_runs: int
) -> tuple[dict[str, Any], MemoryBatch]:
    """Start the stack, measure the latencies, then start the memory batch and return it
    under way (``MemoryBatch.finish`` ends it)."""
    publish("bench_live_10", ["def run(ctx):\n    return None\n"] * 10)
    publish("bench_live_resume", [RESUME_CODE, STARTED_CODE])
    publish("bench_live_timer", [TIMER_CODE])
    publish(MEMORY_FLOW, ["def run(ctx):\n    return None\n"])
    stack = Stack(env)
    try:
        time.sleep(1.0)  # let the worker settle in its idle loop
        idle = (rss_kb(stack.worker.pid), tree_rss_kb(stack.worker.pid))
        for _ in range(3):  # warm-up: first requests, first runs
            run_latency(stack)
        resume_latency(stack)
        run_s, resume_s = [], []
        for i in range(max(runs, resumes)):  # interleaved, so drift hits both alike
            if i < runs:
                run_s.append(run_latency(stack))
            if i < resumes:
                resume_s.append(resume_latency(stack))
        late = timer_lateness(stack, timers)
        latency: dict[str, Any] = {
            "run_10_steps": percentiles(run_s),
            "resume_to_next_step": percentiles(resume_s),
            "timer_lateness": {"p50_ms": median(late) * 1e3, "n": len(late)},
            "poll_s": POLL_S,
            "samples_ms": {
                "run_10_steps": [round(x * 1e3, 2) for x in run_s],
                "resume_to_next_step": [round(x * 1e3, 2) for x in resume_s],
                "timer_lateness": [round(x * 1e3, 1) for x in late],
            },
        }
        log(
            f"    latency: run p50 {latency['run_10_steps']['p50_ms']:.1f} ms, resume p50 "
            f"{latency['resume_to_next_step']['p50_ms']:.1f} ms, timer late "
            f"{latency['timer_lateness']['p50_ms']:.0f} ms"
        )
        return latency, MemoryBatch(env, stack, memory_runs, idle)
    except BaseException:
        env.stop_workers()
        raise


def start_in_bulk(workflow_name: str, count: int) -> None:
    """The memory batch's runs, created in bulk: the rows ``start_run`` records (pending, with
    the job id ``enqueue_run`` records) in one statement, then their jobs with
    ``enqueue_run``'s options, pipelined. Only how the runs are created differs from
    ``start_run``, whose cost per run would compete with the worker for the CPU."""
    workflow = db.session.scalars(select(Workflow).where(Workflow.name == workflow_name)).one()
    version_id = db.session.scalar(
        select(func.max(WorkflowVersion.id)).where(WorkflowVersion.workflow_id == workflow.id)
    )
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for _ in range(count):
        run_id = new_id()
        rows.append(
            {
                "id": run_id,
                "workflow_id": workflow.id,
                "version_id": version_id,
                "status": "pending",
                "trigger": "bench",
                "input": {},
                "step_count": 1,
                "job_id": f"run-{run_id}-{uuid.uuid4().hex[:8]}",
                "enqueued_at": now,
            }
        )
    db.session.execute(insert(Run), rows)
    db.session.commit()
    queue = run_queue()
    options = {
        "timeout": JOB_OPTIONS["job_timeout"],
        "result_ttl": JOB_OPTIONS["result_ttl"],
        "failure_ttl": JOB_OPTIONS["failure_ttl"],
    }
    for i in range(0, count, 1000):
        queue.enqueue_many(
            [
                Queue.prepare_data(
                    RUN_JOB,
                    args=(row["id"],),
                    job_id=row["job_id"],
                    description=f"advance run {row['id']}",
                    **options,
                )
                for row in rows[i : i + 1000]
            ]
        )


def stack_runs(stack: Stack, workflow: str, count: int) -> int:
    ids = [stack.start(workflow) for _ in range(count)]
    for run_id in ids:
        stack.completed(run_id, 120)
    return count


def runs_of(workflow: str, statuses: tuple[str, ...]) -> int:
    count = db.session.scalar(
        select(func.count())
        .select_from(Run)
        .join(Workflow, Workflow.id == Run.workflow_id)
        .where(Workflow.name == workflow, Run.status.in_(statuses))
    )
    db.session.commit()
    return int(count or 0)


def pending(workflow: str) -> int:
    return runs_of(workflow, ("pending", "running"))


def completed(workflow: str) -> int:
    return runs_of(workflow, ("completed",))
