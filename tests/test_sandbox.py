"""The step sandbox with real step processes (no database: the engine's side is a handler
that keeps its records in dicts, as ``workers.execution.Execution`` keeps them in the database)."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from workers.runtime import ClaimLost, RunInfo, StepLogger, StepResult, WaitRequested, utcnow
from workers.sandbox import ControlHandler, Limits, Sandbox, StepCall

ROOT = os.geteuid() == 0


@dataclass(frozen=True)
class Links:
    resume_url: str
    cancel_url: str


class Engine:
    """The engine's side: records tasks, answers flow requests, notes emails."""

    def __init__(self) -> None:
        self.tasks: dict[str, Any] = {}
        self.asked: list[str] = []
        self.emails: list[tuple[Any, ...]] = []
        self.waits: dict[str, Any] = {}
        self.lose_claim = False

    def task_result(self, key: str) -> tuple[bool, Any]:
        self.asked.append(key)
        return key in self.tasks, self.tasks.get(key)

    def record_task(self, key: str, result: Any) -> None:
        if self.lose_claim:
            raise ClaimLost()
        self.tasks[key] = result

    def suspend(self, seconds: float) -> Links:
        return Links(f"http://x/resume/{seconds:g}", "http://x/cancel/s")

    def rerun(self, delay: float, context: Any, max_retries: int) -> Links:
        if context == "refuse":
            raise RuntimeError("a step cannot both suspend and rerun")
        return Links(f"http://x/resume/rerun/{delay:g}", "http://x/cancel/r")

    def wait(self, key: str, seconds: float) -> None:
        if key not in self.waits:
            self.waits[key] = utcnow() + timedelta(seconds=seconds)
            raise WaitRequested(self.waits[key])

    def send_email(self, to: Any, subject: str, text: str, html: str | None) -> None:
        if to == "not-an-address":
            raise ValueError("not-an-address is not an email address")
        self.emails.append((to, subject, text, html))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(Limits(memory_mb=512)) as box:
        yield box


def call(code: str, name: str = "step", timeout: float = 10, **kw: Any) -> StepCall:
    kw.setdefault("run", RunInfo(id="run-1"))
    return StepCall(name=name, code=code, timeout=timeout, **kw)


def execute(box: Sandbox, code: str, engine: Engine | None = None, **kw: Any) -> Any:
    logger = StepLogger(kw.get("name", "step"), 1)
    end = box.execute(call(code, **kw), engine or Engine(), logger)
    end.lines = logger.lines  # type: ignore[attr-defined]
    return end


def still_works(box: Sandbox) -> None:
    end = execute(box, "def run(ctx):\n    return 'fine'")
    assert (end.kind, end.output) == ("ok", "fine"), end.error


def test_output_and_ctx_values_arrive(sandbox):
    code = (
        "def run(ctx):\n"
        "    return {'n': ctx.input['n'], 'earlier': ctx.steps.fetch.output,\n"
        "            'resumed': ctx.steps['ask'].resume_data,\n"
        "            'timed_out': ctx.steps.ask.timed_out,\n"
        "            'run': [ctx.run.id, ctx.run.runs, ctx.run.attempt, ctx.run.context,\n"
        "                    ctx.run.callback_request, ctx.run.recovered,\n"
        "                    ctx.run.previous_output],\n"
        "            'key': ctx.idempotency_key, 'wf': [ctx.workflow, ctx.version],\n"
        "            'secret': ctx.secrets['API_TOKEN']}"
    )
    end = execute(
        sandbox,
        code,
        name="second",
        input={"n": 7},
        steps={
            "fetch": StepResult("fetch", "completed", {"a": 1}),
            "ask": StepResult("ask", "completed", None, {"ok": True}, True),
        },
        run=RunInfo(id="r9", runs=2, attempt=3, context={"c": 1}, callback_request={"q": 1}),
        workflow="wf",
        version="v4",
        secrets={"API_TOKEN": "t0ken"},
    )
    assert end.kind == "ok", end.error
    assert end.output == {
        "n": 7,
        "earlier": {"a": 1},
        "resumed": {"ok": True},
        "timed_out": True,
        "run": ["r9", 2, 3, {"c": 1}, {"q": 1}, False, None],
        "key": "r9:second:2",
        "wf": ["wf", "v4"],
        "secret": "t0ken",
    }


def test_print_and_logger_lines_reach_the_engine(sandbox):
    code = (
        "import sys\n"
        "def run(ctx):\n"
        "    print('hello', 42)\n"
        "    ctx.logger.info('charged', amount=5)\n"
        "    print('to stderr', file=sys.stderr)\n"
        "    ctx.logger.error('late')\n"
    )
    end = execute(sandbox, code)
    assert end.kind == "ok", end.error
    assert [(x["level"], x["message"], x["fields"]) for x in end.lines] == [
        ("print", "hello 42", None),
        ("info", "charged", {"amount": 5}),
        ("print", "to stderr", None),
        ("error", "late", None),
    ]
    assert all(x["step_name"] == "step" and x["created_at"].tzinfo for x in end.lines)


def test_task_asks_the_engine_and_records_once(sandbox):
    engine = Engine()
    code = (
        "calls = []\n"
        "def run(ctx):\n"
        "    a = ctx.task('a', lambda x: calls.append(x) or {'v': x}, 1)\n"
        "    again = ctx.task('a', lambda x: calls.append(x) or {'v': x}, 2)\n"
        "    b = ctx.task('b', lambda: 'bee')\n"
        "    return [a, again, b, len(calls)]\n"
    )
    first = execute(sandbox, code, engine)
    assert first.output == [{"v": 1}, {"v": 1}, "bee", 1]
    assert engine.tasks == {"a": {"v": 1}, "b": "bee"}
    assert engine.asked == ["a", "b"]  # once per key: the answer is kept in the step process
    # A replay: recorded results come back from the engine, the functions are not called.
    replay = execute(sandbox, code.replace("'bee'", "'changed'"), engine)
    assert replay.output == [{"v": 1}, {"v": 1}, "bee", 0]


def test_task_results_sent_with_the_step_need_no_question(sandbox):
    engine = Engine()
    code = "def run(ctx):\n    return [ctx.task('a', lambda: 1), ctx.task('b', lambda: 2)]"
    end = execute(sandbox, code, engine, tasks={"a": "recorded"})
    assert end.output == ["recorded", 2]
    assert engine.asked == []
    assert engine.tasks == {"b": 2}


def test_control_handler_makes_a_control_and_a_task_record_a_handler(sandbox):
    """How the engine's Execution (a runtime.Control) and its task record plug in."""
    control, tasks, written = Engine(), {"old": 1}, []
    handler = ControlHandler(control, tasks, lambda key, result: written.append((key, result)))
    code = (
        "def run(ctx):\n"
        "    links = ctx.flow.suspend(60)\n"
        "    return [ctx.task('old', lambda: 0), ctx.task('new', lambda: 2), links.cancel_url]"
    )
    logger = StepLogger("step", 1)
    end = sandbox.execute(call(code), handler, logger)
    assert end.output == [1, 2, "http://x/cancel/s"]
    assert written == [("new", 2)]
    assert tasks == {"old": 1, "new": 2}


def test_claim_lost_in_the_handler_propagates_and_kills(sandbox):
    engine = Engine()
    engine.lose_claim = True
    with pytest.raises(ClaimLost):
        execute(sandbox, "def run(ctx):\n    ctx.task('a', lambda: 1)\n    return 2", engine)
    still_works(sandbox)


def test_handler_errors_reach_the_step_as_exceptions(sandbox):
    code = (
        "def run(ctx):\n"
        "    try:\n"
        "        ctx.send_email('not-an-address', 's', 't')\n"
        "    except ValueError as exc:\n"
        "        return str(exc)\n"
    )
    assert execute(sandbox, code).output == "not-an-address is not an email address"


def test_email_suspend_rerun_exit_and_wait(sandbox):
    engine = Engine()
    code = (
        "def run(ctx):\n"
        "    links = ctx.flow.suspend(timeout=60)\n"
        "    ctx.send_email(to='a@example.com', subject='Approve?', text=links.resume_url)\n"
        "    return links.cancel_url\n"
    )
    end = execute(sandbox, code, engine)
    assert (end.kind, end.output) == ("ok", "http://x/cancel/s")
    assert [(r.kind, r.args) for r in end.requests] == [("suspend", {"timeout": 60.0})]
    assert engine.emails == [("a@example.com", "Approve?", "http://x/resume/60", None)]

    code = (
        "def run(ctx):\n    return ctx.flow.rerun(5, context={'page': 2}, max_retries=3).resume_url"
    )
    end = execute(sandbox, code, engine)
    assert end.output == "http://x/resume/rerun/5"
    assert end.requests[0].args == {"delay": 5.0, "context": {"page": 2}, "max_retries": 3}

    code = "def run(ctx):\n    ctx.flow.rerun(1, context='refuse')"
    end = execute(sandbox, code, engine)
    assert end.kind == "error" and "RuntimeError: a step cannot both" in end.error
    assert end.requests == []  # refused: not a request the engine took

    # An exit is an exit even when the code catches it.
    code = (
        "def run(ctx):\n"
        "    try:\n"
        "        ctx.flow.exit('nothing to do')\n"
        "    except BaseException:\n"
        "        return 'went on'\n"
    )
    end = execute(sandbox, code, engine)
    assert (end.kind, end.exit_reason) == ("exit", "nothing to do")

    code = "def run(ctx):\n    ctx.wait('cool_down', 30)\n    return 'after'"
    end = execute(sandbox, code, engine)
    assert end.kind == "wait"
    assert end.wait_until == engine.waits["cool_down"]
    assert [(r.kind, r.args) for r in end.requests] == [
        ("wait", {"key": "cool_down", "seconds": 30.0})
    ]
    # Time is up: the wait returns.
    end = execute(sandbox, code, engine)
    assert (end.kind, end.output) == ("ok", "after")


def test_caught_wait_still_ends_as_a_wait(sandbox):
    code = (
        "def run(ctx):\n"
        "    try:\n"
        "        ctx.wait('w', 30)\n"
        "    except BaseException:\n"
        "        pass\n"
        "    return 'ignored the wait'\n"
    )
    assert execute(sandbox, code).kind == "wait"


def test_traceback_shows_the_steps_own_lines(sandbox):
    end = execute(sandbox, "def run(ctx):\n    x = 1\n    return x / 0\n", name="divide")
    assert end.kind == "error" and end.ended == "raised"
    assert 'File "<step divide>", line 3, in run' in end.error
    assert "return x / 0" in end.error
    assert "stepprocess" not in end.error
    assert end.summary == "ZeroDivisionError: division by zero"


def test_code_that_does_not_compile_or_define_run_says_only_that(sandbox):
    end = execute(sandbox, "def run(ctx)\n    return 1", name="broken")
    assert end.error == (
        '  File "<step broken>", line 1\n    def run(ctx)\n                ^\n'
        "SyntaxError: expected ':'"
    )
    end = execute(sandbox, "x = 1")
    assert end.error == "TypeError: the step's code does not define run(ctx)"


def test_swallowed_timeout_is_killed(sandbox):
    code = (
        "import time\n"
        "def run(ctx):\n"
        "    while True:\n"
        "        try:\n"
        "            time.sleep(0.2)\n"
        "        except BaseException:\n"
        "            pass\n"
    )
    started = time.monotonic()
    end = execute(sandbox, code, timeout=2)
    assert time.monotonic() - started < 4
    assert (end.kind, end.ended) == ("error", "timeout")
    assert "timed out after 2 s" in end.error
    still_works(sandbox)


def test_sigterm_ignored_during_the_grace_is_killed(sandbox):
    code = (
        "import signal, time\n"
        "def run(ctx):\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    time.sleep(60)\n"
    )
    started = time.monotonic()
    end = execute(sandbox, code, timeout=1)
    assert time.monotonic() - started < 3.5
    assert "timed out after 1 s" in end.error


def test_a_step_that_closes_its_channel_is_killed(sandbox):
    code = "import os, time\ndef run(ctx):\n    os.close(3)\n    time.sleep(30)"
    started = time.monotonic()
    end = execute(sandbox, code, timeout=30)
    assert time.monotonic() - started < 3
    assert end.error == "the step's process closed its channel to the engine and was killed"
    still_works(sandbox)


def test_a_step_whose_own_child_holds_the_channel_still_ends_at_once(sandbox):
    engine = Engine()
    code = (
        "import os, time\n"
        "def run(ctx):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    ctx.task('grandchild', lambda: pid)\n"
        "    os._exit(2)\n"
    )
    started = time.monotonic()
    end = execute(sandbox, code, engine, timeout=30)
    assert time.monotonic() - started < 3
    assert end.error == "the step's process exited with code 2"
    assert gone(engine.tasks["grandchild"], 3)  # killed with the step process's group
    still_works(sandbox)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("import os\ndef run(ctx):\n    os._exit(1)", "the step's process exited with code 1"),
        (
            "import os, signal\ndef run(ctx):\n    os.kill(os.getpid(), signal.SIGSEGV)",
            "the step's process was killed by signal 11 (SIGSEGV)",
        ),
        ("def run(ctx):\n    raise KeyboardInterrupt", "the step raised KeyboardInterrupt"),
        ("import sys\ndef run(ctx):\n    sys.exit(3)", "the step raised SystemExit(3)"),
    ],
    ids=["os._exit", "sigsegv", "keyboardinterrupt", "systemexit"],
)
def test_a_dying_step_fails_with_how_it_ended(sandbox, code, error):
    end = execute(sandbox, code)
    assert end.kind == "error"
    assert end.error.startswith(error), end.error
    still_works(sandbox)


def test_memory_limit():
    with Sandbox(Limits(memory_mb=256)) as box:
        end = execute(box, "def run(ctx):\n    return len(bytearray(2 * 1024 ** 3))")
        assert (end.kind, end.ended) == ("error", "memory")
        assert end.error.startswith("the step exceeded the memory limit of 256 MB")
        assert end.summary == "the step exceeded the memory limit of 256 MB (STEP_MEMORY_MB)"
        # Within the limit, memory is there.
        end = execute(box, "def run(ctx):\n    return len(bytearray(100 * 1024 ** 2))")
        assert end.output == 100 * 1024**2


def test_output_and_task_result_size_limit(sandbox):
    end = execute(sandbox, "def run(ctx):\n    return 'x' * (6 * 1024 * 1024)")
    assert (end.kind, end.ended) == ("error", "size")
    assert end.error == (
        "the step's output is 6.0 MiB of JSON, more than the limit of 4 MiB (STEP_OUTPUT_MAX_BYTES)"
    )
    engine = Engine()
    code = "def run(ctx):\n    ctx.task('big', lambda: 'x' * (5 * 1024 * 1024))"
    end = execute(sandbox, code, engine)
    assert end.error.startswith("the result of task 'big' is 5.0 MiB of JSON, more than")
    assert engine.tasks == {}
    still_works(sandbox)


def test_long_lines_are_cut_and_lines_past_the_budget_dropped(sandbox):
    code = "def run(ctx):\n    print('x' * (3 * 1024 * 1024))\n    return 1"
    end = execute(sandbox, code)
    assert end.kind == "ok"
    (line,) = end.lines
    assert len(line["message"].encode()) <= 64 * 1024
    cut = 3 * 1024 * 1024 - line["message"].count("x")
    assert line["message"].endswith(f"… [cut: {cut} characters]")

    code = "def run(ctx):\n    for i in range(3 * 1024):\n        print(str(i) * 1024)\n"
    end = execute(sandbox, code)
    kept, last = end.lines[:-1], end.lines[-1]
    assert sum(len(x["message"]) for x in kept) <= 1024 * 1024
    assert len(kept) > 300
    dropped = 3 * 1024 - len(kept)
    assert last["message"] == (
        f"{dropped} further log lines dropped: this execution logged more than 1 MiB "
        "(STEP_LOG_MAX_BYTES)"
    )


def test_limits_from_settings():
    limits = Limits.from_settings(
        {
            "STEP_USER": "daemon",
            "STEP_MEMORY_MB": "300",
            "STEP_OUTPUT_MAX_BYTES": 1000,
            "STEP_LOG_MAX_BYTES": "2000",
            "STEP_ENV_ALLOW": " API_HOST, PROXY ,",
        }
    )
    assert limits == Limits(300, 1000, 2000, "daemon", ("API_HOST", "PROXY"))
    assert Limits.from_settings({}) == Limits()
    assert Limits.from_settings({"STEP_USER": ""}).user is None


def test_environment_holds_none_of_the_consoles_settings(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "s3cret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.setenv("REDIS_URL", "redis://h")
    monkeypatch.setenv("PASSED_ON", "yes")
    monkeypatch.setenv("TZ", "UTC")
    with Sandbox(Limits(env_allow=("PASSED_ON",))) as box:
        end = execute(box, "import os\ndef run(ctx):\n    return dict(os.environ)")
    assert end.kind == "ok", end.error
    assert not {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} & set(end.output)
    assert end.output["PASSED_ON"] == "yes"
    assert set(end.output) <= {"PATH", "HOME", "LANG", "TZ", "BASE_URL", "TMPDIR", "PASSED_ON"}


def test_no_inherited_file_descriptors(tmp_path):
    held = open(tmp_path / "engine-file", "w")  # noqa: SIM115 - open while the engine starts
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "redis.sock"))
    try:
        with Sandbox(Limits()) as box:
            code = "import os\ndef run(ctx):\n    return os.listdir('/proc/self/fd')"
            end = execute(box, code)
    finally:
        held.close()
        listener.close()
    assert end.kind == "ok", end.error
    # 0, 1, 2 (/dev/null), 3 (the channel) and the descriptor listdir itself holds.
    assert len(end.output) <= 5
    assert set(end.output) <= {"0", "1", "2", "3", "4"}


@pytest.mark.skipif(not ROOT, reason="switching users needs root")
def test_runs_as_step_user_and_cannot_read_private_files(sandbox, tmp_path):
    private = tmp_path / "instance"
    private.mkdir(mode=0o700)
    secret = private / "secret_key"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    code = (
        "import os, csv, decimal, datetime\n"
        "def run(ctx):\n"
        f"    path = {str(secret)!r}\n"
        "    try:\n"
        "        open(path).read()\n"
        "        readable = True\n"
        "    except PermissionError:\n"
        "        readable = False\n"
        "    open('scratch.txt', 'w').write('mine')\n"  # its own folder is writable
        "    when = datetime.datetime.strptime('2024-01-02', '%Y-%m-%d')\n"
        "    return [os.getuid(), os.getgid(), os.getgroups(), readable, when.year]\n"
    )
    end = execute(sandbox, code)
    assert end.kind == "ok", end.error
    nobody = pwd.getpwnam("nobody")
    assert end.output == [nobody.pw_uid, nobody.pw_gid, [], False, 2024]


def test_kill_from_another_thread_stops_the_step(sandbox):
    code = "import time\ndef run(ctx):\n    time.sleep(60)"
    timer = threading.Timer(0.5, sandbox.kill, args=("canceled",))
    started = time.monotonic()
    timer.start()
    end = execute(sandbox, code, timeout=60)
    timer.join()
    assert time.monotonic() - started < 3
    assert (end.kind, end.killed_for) == ("killed", "canceled")
    still_works(sandbox)


def test_kill_from_a_signal_handler(sandbox):
    """How the engine stops at once on SIGTERM: its handler kills the step process."""
    previous = signal.signal(signal.SIGALRM, lambda *_: sandbox.kill("shutdown"))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        end = execute(sandbox, "import time\ndef run(ctx):\n    time.sleep(60)", timeout=60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert (end.kind, end.killed_for) == ("killed", "shutdown")
    still_works(sandbox)


def test_steps_of_a_run_share_a_process_and_runs_do_not(sandbox):
    code = "import os\ndef run(ctx):\n    return os.getpid()"
    a1 = execute(sandbox, code, process_key="a").output
    a2 = execute(sandbox, code, process_key="a").output
    b = execute(sandbox, code, process_key="b").output
    fresh = execute(sandbox, code).output
    assert a1 == a2
    assert len({a1, b, fresh}) == 3


def test_a_dead_zygote_is_started_again(sandbox):
    assert sandbox._zygote is not None
    sandbox._zygote.kill()
    sandbox._zygote.wait()
    end = execute(sandbox, "def run(ctx):\n    return 1")
    # The step process it had forked dies with it: that one execution fails, then it works.
    if end.kind != "ok":
        assert end.kind == "error"
    still_works(sandbox)


def test_a_step_can_have_its_own_memory_limit(sandbox):
    code = "def run(ctx):\n    return len(bytearray(300 * 1024 ** 2))"
    end = execute(sandbox, code, memory_mb=200)
    assert end.error.startswith("the step exceeded the memory limit of 200 MB")
    assert execute(sandbox, code).output == 300 * 1024**2  # the sandbox's 512 MB


def test_a_forked_engine_process_uses_a_zygote_of_its_own(sandbox):
    """An RQ work-horse is a fork of the worker: it must not read the parent's replies."""
    still_works(sandbox)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked engine process
        code = 1
        try:
            end = execute(sandbox, "def run(ctx):\n    return 'from the fork'")
            code = 0 if end.output == "from the fork" else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        assert answer.read() == b"\x00"
    os.waitpid(pid, 0)
    still_works(sandbox)


@pytest.mark.skipif(not ROOT, reason="switching users needs root")
def test_an_unknown_step_user_is_named():
    with (
        Sandbox(Limits(user="no-such-user-here")) as box,
        pytest.raises(RuntimeError, match="no-such-user-here"),
    ):
        execute(box, "def run(ctx):\n    return 1")


def test_kill_while_idle_replaces_the_process(sandbox):
    code = "import os\ndef run(ctx):\n    return os.getpid()"
    first = execute(sandbox, code, process_key="idle").output
    sandbox.kill("canceled")
    second = execute(sandbox, code, process_key="idle")
    assert second.kind == "ok" and second.output != first


ENGINE = """
import sys
from workers.runtime import RunInfo, StepLogger
from workers.sandbox import ControlHandler, Limits, Sandbox, StepCall

class Engine:
    def task_result(self, key):
        return False, None
    def record_task(self, key, result):
        print(result, flush=True)

box = Sandbox(Limits())
box.start()
print(box._zygote.pid, flush=True)
code = "import os, time\\ndef run(ctx):\\n    ctx.task('pid', os.getpid)\\n    time.sleep(600)"
box.execute(StepCall("hang", code, 600, run=RunInfo(id="r")), Engine(), StepLogger("hang", 1))
"""


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_engine_killed_takes_its_step_processes_with_it():
    import subprocess
    import sys

    engine = subprocess.Popen(
        [sys.executable, "-c", ENGINE],
        stdout=subprocess.PIPE,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert engine.stdout is not None
        zygote = int(engine.stdout.readline())
        step = int(engine.stdout.readline())
        os.kill(engine.pid, signal.SIGKILL)
        engine.wait()
        # The zygote sees its control socket close; the step process dies with the zygote.
        assert gone(zygote, 5)
        assert gone(step, 5)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
        engine.stdout.close()


@pytest.mark.skipif(not ROOT, reason="switching users needs root")
def test_another_step_process_cannot_read_a_steps_environment(sandbox):
    """Two steps run as the same STEP_USER; one cannot read the other's memory or
    environment (the step process is not dumpable)."""

    class Recording(Engine):
        started = threading.Event()

        def record_task(self, key: str, result: Any) -> None:
            super().record_task(key, result)
            self.started.set()

    engine = Recording()
    code = "import os, time\ndef run(ctx):\n    ctx.task('pid', os.getpid)\n    time.sleep(30)"
    with Sandbox(Limits()) as other:
        worker = threading.Thread(
            target=execute, args=(other, code, engine), kwargs={"timeout": 30}
        )
        worker.start()
        try:
            assert engine.started.wait(10)
            pid = engine.tasks["pid"]
            probe = (
                "def run(ctx):\n"
                "    out = []\n"
                "    for name in ('environ', 'mem', 'maps'):\n"
                "        try:\n"
                f"            open('/proc/{pid}/' + name, 'rb').read(1)\n"
                "            out.append(name)\n"
                "        except PermissionError:\n"
                "            pass\n"
                "    return out\n"
            )
            end = execute(sandbox, probe)
        finally:
            other.kill("canceled")
            worker.join()
    assert (end.kind, end.output) == ("ok", [])


def test_step_folders_are_removed():
    code = (
        "import os\n"
        "def run(ctx):\n"
        "    open('left-behind', 'w').write('x')\n"
        "    if ctx.input.get('die'):\n"
        "        os._exit(1)\n"
        "    return os.getcwd()\n"
    )
    with Sandbox(Limits()) as box:
        first = execute(box, code).output
        execute(box, code, input={"die": True})
        assert execute(box, code, process_key="kept").kind == "ok"
        folder = box._folder
        assert os.path.dirname(first) == folder
        deadline = time.monotonic() + 5
        while os.path.exists(first) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(first)  # its process ended: removed by the zygote
    assert not os.path.exists(folder)  # with the zygote: everything left in it


def test_the_http_request_kind_works_in_a_step_process(sandbox):
    """The built-in kind's generated code, as STEP_USER: what it imports was preloaded."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from console.stepkinds import KINDS

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            data = json.dumps({"got": json.loads(body)}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        kind = KINDS["http"]
        url = f"http://127.0.0.1:{server.server_port}/hook"
        config = dict(kind.defaults(), url=url, method="POST", body='{"n": 1}')
        end = execute(sandbox, kind.code_for(config), name="call_api")
    finally:
        server.shutdown()
        server.server_close()
    assert end.kind == "ok", end.error
    assert (end.output["status"], end.output["json"]) == (201, {"got": {"n": 1}})
    assert [line["message"] for line in end.lines] == ["HTTP POST"]


@pytest.mark.skipif(not ROOT, reason="switching users needs root")
def test_a_module_step_user_cannot_read_says_why(sandbox):
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    probe = execute(sandbox, f"import os\ndef run(ctx):\n    return os.access({stdlib!r}, os.R_OK)")
    if probe.output:
        pytest.skip("STEP_USER can read this interpreter's modules here")
    end = execute(sandbox, "import xmlrpc.client\ndef run(ctx):\n    return 1")
    assert "ModuleNotFoundError: No module named 'xmlrpc': step code runs as nobody" in end.error
    assert execute(sandbox, "import sqlite3, asyncio, csv\ndef run(ctx):\n    return 1").output == 1
