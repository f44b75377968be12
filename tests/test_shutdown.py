"""Stopping and keeping up the stack with real processes (docs/commands.md): ``flask worker``
and ``flask up`` stop within 15 s of SIGTERM or Ctrl+C even while a step hangs, the cut step
is replayed later without counting as a failed attempt, and ``flask up`` restarts its embedded
Redis when it dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from sqlalchemy import select

from console.models import Run, StepRun
from tests.conftest import ROOT, Processes, wait_for
from tests.test_durability import Waiter, get_run, query, start
from tests.test_processes import flask, free_port

pytestmark = pytest.mark.slow

# Hangs, whatever it is sent, the first time (the marker file does not exist yet); then returns.
HANGS_ONCE = """\
import os, time

def run(ctx):
    marker = ctx.input["marker"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        while True:
            try:
                time.sleep(0.2)
            except BaseException:
                pass
    return "done"
"""
STOP_WITHIN = 15.0


def hanging_workflow() -> dict[str, Any]:
    return {
        "steps": [
            {"name": "first", "code": "def run(ctx):\n    return 1"},
            {"name": "hang", "code": HANGS_ONCE, "timeout": 600},
        ]
    }


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (nobody may reap an orphan here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in Processes.children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def gone_within(pids: set[int], seconds: float) -> set[int]:
    """The processes among ``pids`` still alive after ``seconds`` (or as soon as none is)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = {p for p in pids if alive(p)}
        if not left:
            return left
        time.sleep(0.1)
    return {p for p in pids if alive(p)}


def step_attempts(run_id: str) -> dict[str, tuple[str, int]]:
    rows = query(
        select(StepRun.name, StepRun.status, StepRun.attempts).where(StepRun.run_id == run_id)
    )
    return {r.name: (r.status, r.attempts) for r in rows}


def test_flask_worker_stops_on_sigterm_while_a_step_hangs(app, define, api, processes, tmp_path):
    wait = Waiter(processes)
    marker = tmp_path / "hung"
    define("hangs", [dict(s) for s in hanging_workflow()["steps"]])
    worker = processes.worker()
    run_id = start(api, "hangs", marker=str(marker))
    wait(marker.exists, "the step to hang")
    stack = {worker.pid} | descendants(worker.pid)
    assert len(stack) >= 3, stack  # the worker, its zygote and the step's process

    worker.send_signal(signal.SIGTERM)
    left = gone_within(stack, STOP_WITHIN)
    assert not left, (left, processes.output())
    assert worker.wait(1) == 0, processes.output()
    run = get_run(run_id)
    # Given back: due at once, held by no one, the cut execution recorded nowhere.
    assert (run.status, run.lease_owner) == ("pending", None), processes.output()
    assert step_attempts(run_id) == {"first": ("completed", 1)}, processes.output()

    processes.worker()
    wait.status(run_id)
    out = processes.output()
    assert get_run(run_id).output == "done", out
    assert step_attempts(run_id)["hang"] == ("completed", 1), out
    assert query(select(Run.replays, Run.recoveries).where(Run.id == run_id))[0] == (0, 0), out


class Stack:
    """A real ``flask up`` in an instance folder of its own, with the embedded Redis."""

    def __init__(self, tmp_path: Path) -> None:
        self.instance = tmp_path / "instance"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        drop = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CONSOLE_ADMIN_EMAIL")
        env = {k: v for k, v in os.environ.items() if k not in drop + ("BASE_URL",)}
        env.pop("CONSOLE_ADMIN_PASSWORD", None)
        env.pop("XDG_RUNTIME_DIR", None)
        home = tmp_path / "home"
        home.mkdir()
        env.update(
            CONSOLE_INSTANCE_PATH=str(self.instance),
            PORT=str(self.port),
            PYTHONUNBUFFERED="1",
            HOME=str(home),
            RECONCILE_INTERVAL="0.5",
        )
        self.env = env
        self.log_path = tmp_path / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.auth: dict[str, str] = {}

    def up(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "console", "up"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self.healthy, 90, 0.5, message="flask up to be healthy\n" + self.output())
        if not self.auth:
            made = flask(self.env, "tokens", "create", "admin@localhost")
            token = made.stdout.strip().splitlines()[-1]
            self.auth = {"Authorization": f"Bearer {token}"}
        return self.proc

    def healthy(self) -> bool:
        try:
            r = requests.get(f"{self.base}/healthz", timeout=2)
            return r.status_code == 200 and r.json()["workers"] >= 1
        except requests.RequestException:
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, method: str, path: str, **kw: Any) -> Any:
        response = requests.request(method, self.base + path, headers=self.auth, timeout=5, **kw)
        return response.json()

    def run(self, run_id: str) -> Any:
        return self.api("GET", f"/api/runs/{run_id}")

    def wait_status(self, run_id: str, status: str, timeout: float = 60) -> Any:
        return wait_for(
            lambda: (r := self.run(run_id))["status"] == status and r,
            timeout,
            0.3,
            message=f"run {run_id} to be {status}\n" + self.output(),
        )

    def down(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pid in descendants(self.proc.pid) if self.proc else ():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from console.redis_server import stop_embedded; "
                "stop_embedded(sys.argv[1])",
                str(self.instance),
            ],
            cwd=ROOT,
            check=False,
        )


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    made = Stack(tmp_path)
    yield made
    made.down()


@pytest.mark.sqlite_only
def test_ctrl_c_of_flask_up_stops_the_stack_while_a_step_hangs(stack, tmp_path, backend):
    marker = tmp_path / "hung"
    proc = stack.up()
    assert stack.api("PUT", "/api/workflows/hangs", json=hanging_workflow())["published"]
    run_id = stack.api(
        "POST", "/api/workflows/hangs/runs", json={"input": {"marker": str(marker)}}
    )["id"]
    wait_for(marker.exists, 60, 0.2, message="the step to hang\n" + stack.output())
    assert stack.run(run_id)["status"] == "running"
    processes = descendants(proc.pid)
    assert len(processes) >= 6, processes  # web and its workers, worker, zygote, step, scheduler

    proc.send_signal(signal.SIGINT)
    left = gone_within(processes | {proc.pid}, STOP_WITHIN)
    assert not left, (left, stack.output())
    assert proc.wait(1) == 0, stack.output()
    assert not (stack.instance / "redis.pid").exists(), stack.output()

    stack.up()
    run = stack.wait_status(run_id, "completed")
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["hang"]["output"] == "done", stack.output()
    assert steps["hang"]["attempts"] == 1, (steps, stack.output())  # the cut was no attempt


WAITS = """\
import time

def run(ctx):
    time.sleep(4)
    ctx.wait("after-redis", 2)
    return "went on"
"""


@pytest.mark.sqlite_only
def test_flask_up_restarts_its_redis_and_a_run_in_flight_completes(stack, backend):
    stack.up()
    definition = {
        "steps": [
            {"name": "slow", "code": WAITS},
            {"name": "then", "code": "def run(ctx):\n    return ctx.steps.slow.output"},
        ]
    }
    assert stack.api("PUT", "/api/workflows/waits", json=definition)["published"]
    run_id = stack.api("POST", "/api/workflows/waits/runs", json={})["id"]
    stack.wait_status(run_id, "running", 30)
    pid = int((stack.instance / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 5, 0.05, message="redis-server to die")

    sock = str(stack.instance / "redis.sock")

    def answers() -> bool:
        try:
            return bool(redis.Redis(unix_socket_path=sock, socket_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False

    wait_for(answers, 10, 0.1, message="the embedded Redis to be back\n" + stack.output())
    assert int((stack.instance / "redis.pid").read_text()) != pid
    run = stack.wait_status(run_id, "completed", 90)
    assert run["output"] == "went on", stack.output()
    assert "The embedded Redis stopped; starting it again." in stack.output()


STUBBORN = """\
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = "import signal, time; signal.signal(15, signal.SIG_IGN); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", child])
time.sleep(600)
"""


def test_the_supervisor_kills_what_ignores_its_sigterm_with_its_process_group():
    boot = (
        "import os, sys; from workers.supervisor import Supervisor; "
        "Supervisor({'stubborn': [sys.executable, '-c', sys.argv[1]]}, dict(os.environ)).run()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", boot, STUBBORN], cwd=ROOT, start_new_session=True
    )
    try:
        found = wait_for(lambda: len(descendants(proc.pid)) >= 2 and descendants(proc.pid), 30)
        proc.send_signal(signal.SIGINT)
        left = gone_within(found | {proc.pid}, STOP_WITHIN)
        assert not left, left
        assert proc.wait(1) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
