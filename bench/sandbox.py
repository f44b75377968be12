"""The step sandbox's boundary costs: ``python -m bench.sandbox`` prints a table (medians).

No database, no Redis: only ``workers.sandbox`` against the in-process ``call_step`` of
today's engine, on no-op steps, so that the figures are the boundary and nothing else.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from workers.runtime import Context, Flow, RunInfo, StepLogger, Steps, call_step, compile_step
from workers.sandbox import Limits, Sandbox, StepCall

NOOP = "def run(ctx):\n    return {'ok': True}"
TASKS = "def run(ctx):\n    return [ctx.task(f't{i}', lambda: i) for i in range(100)]"
PRINTS = "def run(ctx):\n    for i in range(1000):\n        print('line', i)"


class Engine:
    def __init__(self) -> None:
        self.tasks: dict[str, Any] = {}

    def task_result(self, key: str) -> tuple[bool, Any]:
        return key in self.tasks, self.tasks.get(key)

    def record_task(self, key: str, result: Any) -> None:
        self.tasks[key] = result

    def suspend(self, seconds: float) -> Any:
        raise NotImplementedError

    def rerun(self, delay: float, context: Any, max_retries: int) -> Any:
        raise NotImplementedError

    def wait(self, key: str, seconds: float) -> None:
        raise NotImplementedError

    def send_email(self, to: Any, subject: str, text: str, html: str | None) -> None:
        raise NotImplementedError


def median_us(fn: Callable[[], Any], repeat: int, idle: float = 0.0) -> float:
    """``idle``: seconds between executions, outside the measure (a run's other work)."""
    times = []
    for _ in range(repeat):
        time.sleep(idle)
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def in_process(code: str) -> Callable[[], Any]:
    compiled = compile_step("bench", code)

    def step() -> Any:
        logger = StepLogger("bench", 1)
        tasks: dict[str, Any] = {}
        ctx = Context(
            input={},
            steps=Steps({}),
            run=RunInfo(id="r"),
            logger=logger,
            workflow="w",
            version="v1",
            step_name="bench",
            tasks=tasks,
            record_task=lambda key, result: None,
            flow=Flow(None),
        )
        return call_step(compiled, ctx, 60)

    return step


def sandboxed(
    box: Sandbox,
    code: str,
    key: Callable[[], str | None],
    tasks: dict[str, Any] | None = None,
    new_runs: bool = False,
) -> Callable[[], Any]:
    def step() -> Any:
        end = box.execute(
            StepCall("bench", code, 60, run=RunInfo(id="r"), process_key=key(), tasks=tasks),
            Engine(),
            StepLogger("bench", 1),
        )
        assert end.kind == "ok", end.error
        if new_runs:
            box.end_run()  # as the engine does when a run's drive ends
        return end

    return step


def fork_us(repeat: int) -> float:
    """What RQ's forking worker pays per job before any step: a fork of a process that has
    the console (Flask, SQLAlchemy, RQ, the engine) imported, and its exit."""
    import console.models  # noqa: F401
    import workers.jobs  # noqa: F401

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    return median_us(fork, repeat)


def measure(repeat: int) -> list[tuple[str, float, str]]:
    rows: list[tuple[str, float, str]] = []
    starts = []
    for _ in range(max(3, repeat // 50)):
        started = time.perf_counter()
        with Sandbox(Limits()) as box:
            box.start()
            starts.append(time.perf_counter() - started)
    rows.append(("zygote start (once per engine)", statistics.median(starts) * 1e6, "µs"))

    counter = iter(range(10**9))
    with Sandbox(Limits()) as box:
        box.start()
        base = median_us(in_process(NOOP), repeat)
        same = sandboxed(box, NOOP, lambda: "run")
        same()
        step = median_us(same, repeat)
        runs = max(10, repeat // 5)
        new_run = median_us(
            sandboxed(box, NOOP, lambda: f"r{next(counter)}", new_runs=True), runs, 0.03
        )
        idle_step = median_us(same, runs, 0.03)
        tasks_in = median_us(in_process(TASKS), repeat // 4 or 1)
        tasks_out = median_us(sandboxed(box, TASKS, lambda: "run", {}), repeat // 4 or 1)
        tasks_asked = median_us(sandboxed(box, TASKS, lambda: "run"), repeat // 4 or 1)
        prints_in = median_us(in_process(PRINTS), repeat // 4 or 1)
        prints_out = median_us(sandboxed(box, PRINTS, lambda: "run"), repeat // 4 or 1)
    with Sandbox(Limits(), prefork=False) as box:
        box.start()
        cold_run = median_us(
            sandboxed(box, NOOP, lambda: f"r{next(counter)}", new_runs=True), runs, 0.03
        )

    horse = fork_us(max(10, repeat // 10))
    rows += [
        ("no-op step in-process (call_step, today)", base, "µs"),
        ("no-op step, step process of the run reused", step, "µs"),
        ("  boundary per step", step - base, "µs"),
        ("the same, the process idle 30 ms before", idle_step, "µs"),
        ("no-op step in a new step process (pre-forked)", new_run, "µs"),
        ("  boundary per run (pre-forked), over an idle step", new_run - idle_step, "µs"),
        ("no-op step in a new step process (fork on demand)", cold_run, "µs"),
        ("  boundary per run (fork on demand), over an idle step", cold_run - idle_step, "µs"),
        ("100 new ctx.task calls, per task, in-process", tasks_in / 100, "µs"),
        ("  sandboxed, recorded keys sent with the step", tasks_out / 100, "µs"),
        ("  sandboxed, each key asked for", tasks_asked / 100, "µs"),
        ("1000 print lines, per line, in-process", prints_in / 1000, "µs"),
        ("  sandboxed", prints_out / 1000, "µs"),
        ("fork + exit of an engine with the console imported (RQ's horse)", horse, "µs"),
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox", description=__doc__)
    parser.add_argument("--repeat", type=int, default=300, help="executions per figure")
    args = parser.parse_args(argv)
    rows = measure(args.repeat)
    width = max(len(name) for name, _, _ in rows)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{'step sandbox (medians)':<{width}}  {'value':>10}   (load average {load})")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>10.1f} {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
