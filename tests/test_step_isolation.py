"""The engine executes every step in the step sandbox: real runs (the engine in this process
or a real ``flask worker``), real step processes, both databases.

What a step can do to the console (its environment, its files, its process) and how the way
a step ends reaches the run: timeouts its code swallows, deaths, the memory, output and log
limits, a cancel while it executes, and "Test this step".
"""

from __future__ import annotations

import os
import pwd
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from console import runs as domain
from console.extensions import db
from console.models import LogLine, StepTest, Workflow
from console.steptests import start_step_test
from tests.conftest import run_status, wait_for

ROOT = os.geteuid() == 0
SWALLOWED = (
    "import time\n"
    "def run(ctx):\n"
    "    while True:\n"
    "        try:\n"
    "            time.sleep(0.2)\n"
    "        except BaseException:\n"
    "            pass\n"
)


def start(workflow: Any, input: dict[str, Any] | None = None) -> str:
    run, _ = domain.start_run(workflow, input or {})
    return str(run.id)


def detail(api: Any, run_id: str) -> dict[str, Any]:
    response = api.get(f"/api/runs/{run_id}")
    assert response.status_code == 200
    return dict(response.json)


def output_of(define: Any, work: Any, api: Any, body: str, name: str = "probe") -> Any:
    """Run a one-step workflow whose step is ``import os, socket`` and ``body``; its output."""
    code = "import os, socket\ndef run(ctx):\n" + "".join(
        f"    {line}\n" for line in body.splitlines()
    )
    run_id = start(define(name, [(name, code)]))
    work()
    run = detail(api, run_id)
    assert run["status"] == "completed", run
    return run["output"]


def log_messages(run_id: str) -> list[str]:
    db.session.expire_all()
    rows = db.session.scalars(
        select(LogLine.message).where(LogLine.run_id == run_id).order_by(LogLine.id)
    ).all()
    db.session.commit()
    return list(rows)


# ------------------------------------------------------------------------ how a step ends


@pytest.mark.slow
def test_a_swallowed_timeout_fails_and_the_worker_goes_on(app, define, api, processes):
    hang = define("hang", [{"name": "hang", "code": SWALLOWED, "timeout": 3}])
    quick = define("quick", [("quick", "def run(ctx):\n    return 'done'")])
    processes.worker()  # the only worker
    began = time.monotonic()
    hung = start(hang)
    wait_for(lambda: run_status(hung) == "running", 30, message="the hanging step to start")
    other = start(quick)
    wait_for(lambda: run_status(other) == "completed", 30, message="the other run")
    wait_for(lambda: run_status(hung) == "failed", 10, message="the timeout")
    assert time.monotonic() - began < 20
    run = detail(api, hung)
    assert "timed out after 3 s" in run["error"], run["error"]
    assert run["steps"][0]["attempts"] == 1


def test_a_timeout_caught_by_the_step_still_fails_the_attempt(app, define, work, api):
    code = (
        "import time\n"
        "def run(ctx):\n"
        "    try:\n"
        "        time.sleep(10)\n"
        "    except Exception:\n"
        "        return 'went on'\n"
    )
    uncaught = "import time\ndef run(ctx):\n    time.sleep(10)\n"
    caught = start(define("sneaky", [{"name": "sneaky", "code": code, "timeout": 1}]))
    plain = start(define("plain", [{"name": "plain", "code": uncaught, "timeout": 1}]))
    began = time.monotonic()
    work()
    assert time.monotonic() - began < 8
    run = detail(api, caught)
    assert run["status"] == "failed" and run["output"] is None
    assert "timed out after 1 s (its code caught the timeout)" in run["error"], run["error"]
    error = detail(api, plain)["error"]
    # Where the step was when its time was up.
    assert "StepTimeout: the step timed out after 1 s" in error
    assert 'File "<step plain>", line 3, in run' in error and "time.sleep(10)" in error


DEATHS = {
    "exit": ("os._exit(1)", "the step's process exited with code 1"),
    "keyboard_interrupt": ("raise KeyboardInterrupt", "raised KeyboardInterrupt"),
    "system_exit": ("raise SystemExit", "raised SystemExit"),
    "segfault": ("os.kill(os.getpid(), signal.SIGSEGV)", "killed by signal 11 (SIGSEGV)"),
}


@pytest.mark.parametrize("how", list(DEATHS))
def test_a_dying_step_fails_its_attempt_with_how_it_ended_and_retries(app, define, work, api, how):
    statement, ended = DEATHS[how]
    code = (
        "import os, signal\n"
        "def run(ctx):\n"
        "    if ctx.run.attempt == 1:\n"
        f"        {statement}\n"
        "    return ctx.run.attempt\n"
    )
    once = define(f"once_{how}", [{"name": "die", "code": code, "retries": 0}])
    twice = define(f"twice_{how}", [{"name": "die", "code": code, "retries": 1, "retry_delay": 0}])
    failed, retried = start(once), start(twice)
    work()
    run = detail(api, failed)
    assert run["status"] == "failed" and ended in run["error"], run["error"]
    assert run["steps"][0]["attempts"] == 1
    run = detail(api, retried)
    assert run["status"] == "completed" and run["output"] == 2, run
    assert run["steps"][0]["attempts"] == 2
    assert any("attempt 1 failed" in m for m in log_messages(retried))


def test_a_step_over_the_memory_limit_fails_naming_it(app, define, work, api):
    app.config["STEP_MEMORY_MB"] = 512
    wf = define("greedy", [("greedy", "def run(ctx):\n    return len(bytearray(2 * 1024**3))")])
    run_id = start(wf)
    work()
    run = detail(api, run_id)
    assert run["status"] == "failed"
    assert "exceeded the memory limit of 512 MB (STEP_MEMORY_MB)" in run["error"], run["error"]


def test_an_output_over_the_limit_fails_naming_it(app, define, work, api):
    wf = define("big", [("big", "def run(ctx):\n    return 'x' * (6 * 1024 * 1024)")])
    run_id = start(wf)
    work()
    run = detail(api, run_id)
    assert run["status"] == "failed"
    assert "limit of 4 MiB (STEP_OUTPUT_MAX_BYTES)" in run["error"], run["error"]
    assert run["steps"][0]["output"] is None


def test_a_huge_print_is_cut_and_lines_past_the_budget_dropped(app, define, work, api):
    code = (
        "def run(ctx):\n"
        "    print('x' * (3 * 1024 * 1024))\n"
        "    for _ in range(40):\n"
        "        print('y' * 60000)\n"
        "    return 'ok'\n"
    )
    run_id = start(define("loud", [("loud", code)]))
    work()
    assert detail(api, run_id)["status"] == "completed"
    messages = log_messages(run_id)
    first = messages[0]
    assert first.startswith("xxx") and "… [cut: " in first
    assert len(first.encode()) <= 64 * 1024
    assert sum(len(m.encode()) for m in messages) < 1.1 * 1024 * 1024
    assert "dropped" in messages[-1] and "STEP_LOG_MAX_BYTES" in messages[-1]


def test_tracebacks_show_the_steps_own_lines(app, define, work, api):
    code = "def run(ctx):\n    x = 1\n    raise ValueError('nope')\n"
    run_id = start(define("tb", [("tb", code)]))
    work()
    error = detail(api, run_id)["error"]
    assert 'File "<step tb>", line 3, in run' in error and "raise ValueError('nope')" in error
    assert "ValueError: nope" in error and "stepprocess" not in error


# ------------------------------------------------------------- what a step cannot reach


def test_the_environment_holds_no_setting_of_the_console(app, define, work, api):
    assert os.environ["SECRET_KEY"] and os.environ["DATABASE_URL"]  # the engine has them
    names = ["SECRET_KEY", "DATABASE_URL", "REDIS_URL"]
    seen = output_of(define, work, api, f"return {{n: os.environ.get(n) for n in {names!r}}}")
    assert seen == dict.fromkeys(names)


@pytest.mark.skipif(not ROOT, reason="as the worker's own user a step can open its files")
def test_the_instance_files_and_the_redis_socket_cannot_be_opened(app, define, work, api):
    instance = Path(app.instance_path)
    (instance / "secret_key").write_text("not for steps")  # as the console writes one: 0600
    database = instance / "console.db"
    if not database.exists():  # PostgreSQL: an SQLite file would be private the same way
        database.touch(mode=0o600)
    sock = app.config["REDIS_URL"].removeprefix("unix://").split("?")[0]
    assert os.path.exists(sock)
    body = (
        "seen = {}\n"
        f"for path in {[str(database), str(instance / 'secret_key')]!r}:\n"
        "    try:\n"
        "        open(path).close()\n"
        "        seen[path] = 'opened'\n"
        "    except OSError as exc:\n"
        "        seen[path] = type(exc).__name__\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({sock!r})\n"
        "    seen['redis'] = 'connected'\n"
        "except OSError as exc:\n"
        "    seen['redis'] = type(exc).__name__\n"
        "return seen"
    )
    seen = output_of(define, work, api, body)
    assert set(seen.values()) == {"PermissionError"}, seen


def test_no_file_descriptor_of_the_engine_is_open_in_a_step(app, define, work, api):
    body = (
        "fds = {}\n"
        "for fd in os.listdir('/proc/self/fd'):\n"
        "    try:\n"
        "        fds[fd] = os.readlink(f'/proc/self/fd/{fd}')\n"
        "    except OSError:\n"
        "        pass\n"
        "return fds"
    )
    fds = output_of(define, work, api, body)
    targets = {int(fd): target for fd, target in fds.items()}
    assert targets[0] == targets[1] == targets[2] == "/dev/null"
    assert targets[3].startswith("socket:")  # its channel to the engine
    rest = [t for fd, t in targets.items() if fd > 3]
    # Only the listing's own handle on /proc/self/fd.
    assert len(rest) <= 1 and all(t.startswith("/proc/") for t in rest), targets


@pytest.mark.skipif(not ROOT, reason="the step process changes user only when the worker is root")
def test_step_code_runs_as_step_user(app, define, work, api):
    nobody = pwd.getpwnam("nobody")
    assert output_of(define, work, api, "return [os.getuid(), os.getgid(), os.getgroups()]") == [
        nobody.pw_uid,
        nobody.pw_gid,
        [],
    ]


# ---------------------------------------------------------------------------- cancel


@pytest.mark.slow
def test_cancel_kills_a_hanging_step_within_two_seconds(app, define, api, processes, tmp_path):
    pid_file = tmp_path / "pid"
    code = (
        "import os, time\n"
        "def run(ctx):\n"
        f"    with open({str(pid_file)!r}, 'w') as f:\n"
        "        f.write(str(os.getpid()))\n"
        "    while True:\n"
        "        try:\n"
        "            time.sleep(0.2)\n"
        "        except BaseException:\n"
        "            pass\n"
    )
    hang = define("stuck", [{"name": "stuck", "code": code, "timeout": 600}])
    quick = define("after", [("after", "def run(ctx):\n    return 'done'")])
    processes.worker()
    run_id = start(hang)
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30, message="the step")
    pid = int(pid_file.read_text())
    assert Path(f"/proc/{pid}").exists()
    canceled = time.monotonic()
    assert api.post(f"/api/runs/{run_id}/cancel").status_code == 200
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 5, 0.02, "the step process to go")
    assert time.monotonic() - canceled < 2
    run = detail(api, run_id)
    assert run["status"] == "canceled"

    def step() -> dict[str, Any]:
        run_status(run_id)  # a fresh snapshot: the worker writes the step's record
        return dict(detail(api, run_id)["steps"][0])

    wait_for(lambda: step()["status"] == "canceled", 5, message="the canceled step's record")
    assert detail(api, run_id)["steps"][0]["error"].startswith(domain.CANCELED_WHILE_RUNNING)
    other = start(quick)  # the worker is free again
    wait_for(lambda: run_status(other) == "completed", 30, message="the next run")


# ---------------------------------------------------------------------- Test this step


def test_test_this_step_is_sandboxed_and_its_timeout_enforced(app, define, api):
    from rq import Queue

    from console.queueing import get_redis
    from workers.worker import SimpleConsoleWorker

    workflow = define("tested", [("probe", "def run(ctx):\n    return 1")])
    workflow = db.session.get(Workflow, workflow.id)
    definition = {
        "steps": [
            {"name": "hang", "code": SWALLOWED, "timeout": 2, "retries": 0, "retry_delay": 5},
            {
                "name": "env",
                "code": "import os\ndef run(ctx):\n    return [os.getuid(), "
                "os.environ.get('SECRET_KEY')]",
                "timeout": 30,
                "retries": 0,
                "retry_delay": 5,
            },
        ]
    }
    hang = start_step_test(workflow, definition, "hang", {}, None)
    probe = start_step_test(workflow, definition, "env", {}, None)
    began = time.monotonic()
    queue = Queue(app.config["TEST_QUEUE"], connection=get_redis())
    db.session.commit()
    SimpleConsoleWorker([queue], connection=get_redis()).work(burst=True, logging_level="WARNING")
    assert time.monotonic() - began < 10
    db.session.expire_all()
    hung = db.session.get(StepTest, hang.id)
    assert hung.status == "failed" and "timed out after 2 s" in hung.error, hung.error
    seen = db.session.get(StepTest, probe.id)
    assert seen.status == "completed"
    assert seen.output[1] is None
    if ROOT:
        assert seen.output[0] == pwd.getpwnam("nobody").pw_uid


# ----------------------------------------------------------------------------- the worker


def test_the_worker_keeps_its_rq_heartbeats_while_a_job_executes(app, define, api):
    """Jobs execute in the worker's process (no work-horse watching them): the worker still
    renews its and the job's heartbeats, so a long run does not make it look dead to RQ."""
    from rq import Queue

    from console.queueing import get_redis
    from workers.worker import ConsoleWorker

    wf = define("slowish", [("slowish", "import time\ndef run(ctx):\n    time.sleep(3.5)")])
    run_id = start(wf)
    queue = Queue(app.config["RUN_QUEUE"], connection=get_redis())
    (job_id,) = queue.job_ids
    beats: list[bytes] = []
    stop = threading.Event()

    conn = get_redis()

    def watch() -> None:
        while not stop.wait(0.1):
            value = conn.hget(f"rq:job:{job_id}", "last_heartbeat")
            if value and value not in beats:
                beats.append(value)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        worker = ConsoleWorker([queue], connection=get_redis(), job_monitoring_interval=1)
        worker.work(burst=True, logging_level="WARNING")
    finally:
        stop.set()
        watcher.join()
    assert run_status(run_id) == "completed"
    assert len(beats) >= 3, beats  # at the start, then every second of the 3.5 s step


@pytest.mark.slow
@pytest.mark.parametrize("simple", [False, True], ids=["worker", "simple"])
def test_flask_worker_and_simple_execute_steps_in_step_processes(
    app, define, api, processes, simple
):
    code = (
        "import os\ndef run(ctx):\n"
        "    return [os.getpid(), os.getuid(), sorted(set(os.environ) & {'SECRET_KEY', "
        "'DATABASE_URL', 'REDIS_URL'})]"
    )
    worker = processes.worker(*(["--simple"] if simple else []))
    run_id = start(define("where", [("where", code)]))
    wait_for(lambda: run_status(run_id) == "completed", 30, message="the run")
    pid, uid, settings = detail(api, run_id)["output"]
    assert pid != worker.pid and settings == []
    if ROOT:
        assert uid == pwd.getpwnam("nobody").pw_uid
