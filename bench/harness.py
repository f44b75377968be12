"""The benchmark's own world: a temporary instance folder, the embedded Redis, a fresh SQLite
database, the Flask app, workflow definitions and real worker processes.

Nothing here touches the project's ``instance/`` folder or a configured ``DATABASE_URL``:
every setting the app reads is overridden for this process and its children, and restored
(and the folder removed) on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from console import create_app
from console.definitions import save_workflow
from console.extensions import db
from console.models import Run, Workflow, WorkflowVersion
from console.redis_server import ensure_embedded, stop_embedded
from workers.app import set_app

ROOT = Path(__file__).resolve().parent.parent
NOOP_CODE = "def run(ctx):\n    return None\n"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``y = slope * x + intercept``."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    return slope, mean_y - slope * mean_x


@dataclass
class Flow:
    """A published benchmark workflow."""

    workflow_id: int
    version_id: int
    name: str
    steps: int


class BenchEnv:
    """Context manager: set up everything on enter, tear everything down on exit."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.base = Path(tempfile.mkdtemp(prefix="console-bench-"))
        self.instance = self.base / "instance"
        self.logs = self.base / "logs"
        self.instance.mkdir()
        self.logs.mkdir()
        self.env: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}
        self._ctx: Any = None
        self.app: Flask | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self._redis_started = False

    # ------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> BenchEnv:
        try:
            self._setup()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _setup(self) -> None:
        log(f"instance folder {self.instance}")
        redis_url = ensure_embedded(str(self.instance))
        self._redis_started = True
        self.env = {
            "DATABASE_URL": f"sqlite:///{self.instance / 'console.db'}",
            "REDIS_URL": redis_url,
            "CONSOLE_INSTANCE_PATH": str(self.instance),
            "SECRET_KEY": "bench-secret",
            "CONSOLE_ENV": "development",
            "BASE_URL": "http://bench.invalid",
            "RUN_QUEUE": "bench-runs",
            "RUN_LEASE_SECONDS": "30",
            "FLASK_APP": "console",
            "PYTHONUNBUFFERED": "1",
        }
        for key, value in self.env.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        self.app = create_app()
        self._ctx = self.app.app_context()
        self._ctx.push()
        db.create_all()
        set_app(self.app)
        self.redis().flushall()

    def __exit__(self, *exc: Any) -> None:
        self.stop_workers()
        if self._ctx is not None:
            try:
                db.session.remove()
                db.engine.dispose()
            finally:
                self._ctx.pop()
                self._ctx = None
        if self._redis_started:
            stop_embedded(str(self.instance))
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self.keep:
            log(f"kept {self.base}")
        else:
            shutil.rmtree(self.base, ignore_errors=True)

    # ----------------------------------------------------------------------------- redis
    def redis(self) -> Any:
        from console.queueing import get_redis

        return get_redis()

    def queue(self) -> Any:
        from console.queueing import run_queue

        return run_queue()

    # ------------------------------------------------------------------------- workflows
    def define(self, name: str, steps: int, code: str = NOOP_CODE) -> Flow:
        body = [{"name": f"s{i:03d}", "code": code} for i in range(steps)]
        workflow, version, _ = save_workflow({"name": name, "steps": body})
        assert version is not None
        flow = Flow(workflow.id, version.id, name, steps)
        db.session.commit()
        return flow

    def new_run(self, flow: Flow) -> str:
        """A pending run recorded the way ``start_run`` records it, without enqueueing it
        (the in-process measurements drive it themselves)."""
        run = Run(
            workflow_id=flow.workflow_id,
            version_id=flow.version_id,
            status="pending",
            trigger="bench",
            input={},
            step_count=flow.steps,
        )
        db.session.add(run)
        db.session.commit()
        run_id = run.id
        db.session.expunge_all()
        return run_id

    def step_codes(self, flow: Flow) -> list[str]:
        definition = db.session.scalar(
            select(WorkflowVersion.definition).where(WorkflowVersion.id == flow.version_id)
        )
        db.session.commit()
        assert definition is not None
        return [s["code"] for s in definition["steps"]]

    def workflow(self, flow: Flow) -> Workflow:
        workflow = db.session.get(Workflow, flow.workflow_id)
        assert workflow is not None
        return workflow

    # --------------------------------------------------------------------------- workers
    def start_worker(self, simple: bool, burst: bool = True) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "flask", "--app", "console", "worker"]
        if burst:
            args.append("--burst")
        if simple:
            args.append("--simple")
        return self.start_process("worker", args)

    def start_process(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """A process of the stack (worker, scheduler, web) with the benchmark's settings, in
        a session of its own; ``stop_workers`` ends it."""
        out = open(self.logs / f"{name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            args,
            env=dict(os.environ, **self.env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def wait_workers(self, procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for proc in procs:
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                code = proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                self.stop_workers()
                raise RuntimeError(
                    f"worker {proc.pid} did not finish in {timeout:g} s; logs in {self.logs}"
                ) from None
            if code != 0:
                raise RuntimeError(f"worker {proc.pid} exited with {code}; logs in {self.logs}")

    def stop_workers(self) -> None:
        """Kill the worker processes this benchmark started. RQ 3 puts a work-horse in a
        process group of its own, so the worker is stopped first and its children killed by pid,
        then the worker's group."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGSTOP)
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
                with contextlib.suppress(OSError):
                    for child in children.read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(child), signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs = [p for p in self.procs if p.poll() is None]

    def worker_logs(self) -> Iterator[str]:
        for path in sorted(self.logs.glob("*.log")):
            yield f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
