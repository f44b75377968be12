"""The step sandbox, engine side: executes one step's code in a step process and says how it
ended. The engine (claims, checkpoints, the database, Redis) never executes step code; what
the step's ``ctx`` asks of it arrives here as messages, answered by a ``StepHandler``.

How it is built, and why (medians from ``python -m bench.sandbox`` on this 2-core VM, quiet
(load < 1); with other jobs on it (load 5 to 11) the figures were 2 to 10 times these):

- **A zygote per engine**, started once as a fresh interpreter (``workers.stepprocess``),
  never a fork of the engine: a fork of the engine would carry the app, its configuration,
  the secret key and the pool's sockets in its memory. The zygote imports only the standard
  library and the step runtime (0.13 s, once), then forks step processes.
- **One step process per run**, reused for that run's steps and replaced after a kill or a
  death. A step in a reused process costs 0.18 ms more than today's in-process
  ``call_step`` (0.04 ms); 0.7 ms when the process sat idle for 30 ms before, as it does
  while the engine writes a checkpoint (waking an idle process is slow on a VM). A new
  process costs a fork of the zygote and its start, 7.4 ms on demand, so one is
  **pre-forked and warmed up** after each execution: a run that takes it pays 0.3 ms on its
  first step. A process per step would pay that on every step, or 7 ms when steps come
  faster than pre-forking, for little isolation gained: a run's steps share an author and a
  workflow. ``ctx.task`` costs one round trip (0.09 ms) when the recorded results come with
  the step (``StepCall.tasks``; a replay then costs none), two (0.13 ms) when each key is
  asked for; a print line 14 µs (sent in batches).
- **The engine need not fork per job**: crash isolation now comes from the step process,
  and RQ's fork of a work-horse with the console imported costs 4 ms per job, more than
  the step process it would protect. A forked engine still works (``Sandbox`` starts a
  zygote of its own in a process that is not the one that created it), at that price.
- **Isolation after the fork**, in the step process, before any step code: the environment
  is the filtered one the zygote started with (``step_environment``); every file descriptor
  except its channel is closed (0, 1, 2 are ``/dev/null``); when the zygote runs as root it
  drops to ``STEP_USER`` (setgroups, setgid, setuid) *after* the interpreter and modules are
  loaded, so the interpreter may live where that user cannot read, and works in a temporary
  folder of its own (``HOME`` and ``TMPDIR`` then point there). ``PR_SET_NO_NEW_PRIVS``
  keeps setuid programs from giving root back; the step process is not dumpable, so other
  processes of ``STEP_USER`` cannot read its memory or environment.
- **Limits from outside**: the timeout is kept here (SIGTERM, then SIGKILL to the step
  process's group after ``term_grace`` ≤ 1 s, whatever the code catches); memory is
  ``RLIMIT_AS`` (address space: cgroups would need a delegated hierarchy that a plain install
  or a dyno does not have), so a step that allocates past it gets ``MemoryError``; the
  zygote's own mappings (~35 MB) count in it. Sizes are measured on the frames' payloads
  before they are read: a value over ``STEP_OUTPUT_MAX_BYTES`` is never read.

Steps may import what the zygote preloaded (``stepprocess.PRELOAD``) and anything else
``STEP_USER`` can read.

Long: over the house's ~500 lines because the zygote's lifecycle, the timeout and kill paths
and the message session share one lock and the child's state; apart, each would reach into
the others' private fields.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from . import channel
from .runtime import Control, RunInfo, StepLogger, StepResult, WaitRequested, utcnow
from .stepprocess import MEMORY_EXIT

ROOT = str(Path(__file__).resolve().parent.parent)
KEPT_ENV = ("PATH", "HOME", "LANG", "TZ", "BASE_URL")
LOG_LEVELS = {"debug", "info", "warning", "error", "print"}
LOG_FRAME_MAX = 2 * channel.MiB
SOFT_GRACE = 0.5  # seconds a step has to end after its StepTimeout before it is killed
_STOPPED = "the step was stopped: "


class StepHandler(Protocol):
    """What a step asks of the engine while it executes (``workers.execution.Execution`` plus the
    run's task record). Exceptions it raises reach the step's code as the same built-in
    type (else ``RuntimeError``); ``WaitRequested`` ends the execution as a wait; any other
    ``BaseException`` (``ClaimLost``) kills the step process and propagates from
    ``Sandbox.execute``."""

    def task_result(self, key: str) -> tuple[bool, Any]: ...

    def record_task(self, key: str, result: Any) -> None: ...

    def suspend(self, seconds: float) -> Any: ...

    def rerun(self, delay: float, context: Any, max_retries: int) -> Any: ...

    def wait(self, key: str, seconds: float) -> None: ...

    def send_email(self, to: Any, subject: str, text: str, html: str | None) -> None: ...


class ControlHandler:
    """A ``StepHandler`` made of a ``runtime.Control`` (the engine's ``Execution``, or "Test
    this step"'s ``TestControl``) and the step's task record: ``tasks`` (key → result, kept
    up to date) and ``record`` (writes one result; it may raise ``ClaimLost``)."""

    def __init__(
        self,
        control: Control,
        tasks: dict[str, Any],
        record: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.control, self.tasks, self.record = control, tasks, record

    def task_result(self, key: str) -> tuple[bool, Any]:
        return key in self.tasks, self.tasks.get(key)

    def record_task(self, key: str, result: Any) -> None:
        if self.record is not None:
            self.record(key, result)
        self.tasks[key] = result

    def suspend(self, seconds: float) -> Any:
        return self.control.suspend(seconds)

    def rerun(self, delay: float, context: Any, max_retries: int) -> Any:
        return self.control.rerun(delay, context, max_retries)

    def wait(self, key: str, seconds: float) -> None:
        self.control.wait(key, seconds)

    def send_email(self, to: Any, subject: str, text: str, html: str | None) -> None:
        self.control.send_email(to, subject, text, html)


def _int(settings: Mapping[str, Any], name: str, default: int) -> int:
    value = settings.get(name)
    return default if value in (None, "") else int(value)


@dataclass(frozen=True)
class Limits:
    """The sandbox's settings (docs/ §8 and §11 give the names and defaults)."""

    memory_mb: int = 1024
    output_max_bytes: int = 4 * channel.MiB
    log_max_bytes: int = channel.MiB
    user: str | None = "nobody"
    env_allow: tuple[str, ...] = ()
    term_grace: float = 0.5

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Limits:
        """From the app's config or the environment."""
        allow = str(settings.get("STEP_ENV_ALLOW") or "")
        return cls(
            memory_mb=_int(settings, "STEP_MEMORY_MB", 1024),
            output_max_bytes=_int(settings, "STEP_OUTPUT_MAX_BYTES", 4 * channel.MiB),
            log_max_bytes=_int(settings, "STEP_LOG_MAX_BYTES", channel.MiB),
            user=str(settings.get("STEP_USER", "nobody") or "") or None,
            env_allow=tuple(n.strip() for n in allow.split(",") if n.strip()),
        )


def step_environment(env: Mapping[str, str], allow: tuple[str, ...] = ()) -> dict[str, str]:
    """The step process's environment: the few neutral names, and those listed."""
    return {name: env[name] for name in (*KEPT_ENV, *allow) if name in env}


@dataclass
class StepCall:
    """One execution of one step: its code and what its ``ctx`` shows."""

    name: str
    code: str
    timeout: float
    input: dict[str, Any] = field(default_factory=dict)
    steps: Mapping[str, StepResult] = field(default_factory=dict)
    run: RunInfo = field(default_factory=lambda: RunInfo(id=""))
    workflow: str = ""
    version: str = ""
    secrets: Mapping[str, str] = field(default_factory=dict)
    # Steps with the same key may share a step process (the run's id); None: a fresh one.
    process_key: str | None = None
    # A per-step STEP_MEMORY_MB (None: the sandbox's).
    memory_mb: int | None = None
    # The step's recorded task results, when the engine has them at hand: sent with the
    # step, they save ``ctx.task`` a round trip per key. None: asked for key by key.
    tasks: Mapping[str, Any] | None = None

    def spec(self, limits: Limits) -> dict[str, Any]:
        return {
            "name": self.name,
            "code": self.code,
            "input": self.input,
            "steps": {
                n: [r.status, r.output, r.resume_data, r.timed_out] for n, r in self.steps.items()
            },
            "run": asdict(self.run),
            "tasks": None if self.tasks is None else dict(self.tasks),
            "workflow": self.workflow,
            "version": self.version,
            "secrets": dict(self.secrets),
            "log_max_bytes": limits.log_max_bytes,
            "timeout": self.timeout,
        }


@dataclass(frozen=True)
class FlowRequest:
    """A ``ctx.flow.suspend``/``rerun`` or ``ctx.wait`` call the engine answered."""

    kind: Literal["suspend", "rerun", "wait"]
    args: dict[str, Any]


@dataclass
class StepEnd:
    """How one execution ended.

    ``kind``: ``ok`` (``output``), ``error`` (``error`` is the text to keep: the step's own
    traceback, or how its process ended; ``summary`` one line), ``exit``
    (``ctx.flow.exit``, ``exit_reason``), ``wait`` (``ctx.wait``, ``wait_until``), or
    ``killed`` (``Sandbox.kill(reason)`` from the engine, ``killed_for``: a cancel or a
    shutdown, which is no failed attempt). ``ended`` says which way an error came:
    ``raised``, ``timeout``, ``memory``, ``size``, ``exited``, ``signal``, ``protocol``.
    """

    kind: Literal["ok", "error", "exit", "wait", "killed"]
    output: Any = None
    error: str | None = None
    summary: str | None = None
    ended: str | None = None
    exit_reason: str | None = None
    wait_until: datetime | None = None
    killed_for: str | None = None
    requests: list[FlowRequest] = field(default_factory=list)
    seconds: float = 0.0
    # What the execution read (``runtime.Reads.record``), None when not reported.
    reads: dict[str, Any] | None = None

    @property
    def failed(self) -> bool:
        return self.kind == "error"


class _Failed(Exception):
    """Ends an execution with an error (the step process is then killed)."""

    def __init__(self, ended: str, error: str) -> None:
        super().__init__(error)
        self.ended, self.error = ended, error


@dataclass
class _Child:
    pid: int
    sock: socket.socket
    memory_mb: int
    key: str | None = None


class Sandbox:
    """Step processes for one engine process. ``execute`` is called by one thread at a time;
    ``kill`` may be called from any thread (a cancel) or a signal handler (a shutdown)."""

    def __init__(
        self,
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
        prefork: bool = True,
    ) -> None:
        self.limits = limits or Limits()
        self.prefork = prefork
        self.env = step_environment(os.environ if env is None else env, self.limits.env_allow)
        self._zygote: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._child: _Child | None = None
        self._spare: int | None = None  # the id of a fork requested ahead
        self._spare_sock: socket.socket | None = None
        self._forked: dict[int, int] = {}
        self._statuses: dict[int, int] = {}
        self._retired: set[int] = set()
        self._next_id = 0
        # Reentrant: ``kill`` may run in a signal handler while this thread holds it.
        self._lock = threading.RLock()
        self._fork_error = ""
        self._folder = ""
        self._pid = os.getpid()
        self._parents_zygote: subprocess.Popen[bytes] | None = None
        self._running = False
        self._killed_for: str | None = None
        self._shutting_down = False

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------- processes
    def start(self) -> None:
        """Start the zygote (``execute`` does when needed)."""
        if self._zygote is not None and self._zygote.poll() is None:
            return
        self._reset_zygote()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        boot = (
            f"import sys; sys.path.insert(0, {ROOT!r}); "
            "from workers.stepprocess import zygote; zygote(int(sys.argv[1]))"
        )
        with theirs:
            self._zygote = subprocess.Popen(
                [sys.executable, "-I", "-c", boot, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=self.env,
                stdin=subprocess.DEVNULL,
                cwd="/",
                # Out of the terminal's process group: a Ctrl+C is the engine's to handle.
                start_new_session=True,
            )
        self._control = mine
        ready = self._read_control(30.0, lambda m: m.get("op") == "ready")
        if ready is None:
            self._reset_zygote()
            raise RuntimeError("the step sandbox's zygote did not start")
        self._folder = str(ready.get("folder") or "")

    def _reset_zygote(self) -> None:
        if self._control is not None:
            self._control.close()
        if self._zygote is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._zygote.wait(1.0)
            if self._zygote.poll() is None:
                self._zygote.kill()
                self._zygote.wait()
        self._zygote = self._control = None
        if self._folder:  # what step processes killed with the zygote left behind
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = ""
        for sock in (self._spare_sock,):
            if sock is not None:
                sock.close()
        self._spare = self._spare_sock = None
        self._forked.clear()
        self._statuses.clear()
        self._retired.clear()

    def _read_control(self, timeout: float, want: Any) -> dict[str, Any] | None:
        """Read the zygote's messages until one satisfies ``want`` (None after ``timeout``
        or when the zygote is gone); the others are kept."""
        deadline = time.monotonic() + timeout
        while self._control is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and timeout > 0:
                return None
            self._control.settimeout(max(remaining, 0.0))  # 0: only what has come
            try:
                data = self._control.recv(65536)
            except (TimeoutError, BlockingIOError):
                return None
            except OSError:
                data = b""
            if not data:
                self._reset_zygote()
                return None
            message = channel.json.loads(data)
            if message.get("op") == "exited":
                if message["pid"] in self._retired:  # nobody waits for its status
                    self._retired.discard(message["pid"])
                else:
                    self._statuses[message["pid"]] = message["status"]
            elif message.get("op") == "forked":
                self._forked[message["id"]] = message["pid"]
            elif message.get("op") == "fork_failed":
                self._forked[message["id"]] = -1
                self._fork_error = str(message.get("error"))
            if want(message):
                return message
        return None

    def _request_fork(self, memory_mb: int) -> tuple[int, socket.socket]:
        assert self._control is not None
        self._next_id += 1
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        request = {
            "op": "fork",
            "id": self._next_id,
            "memory_mb": memory_mb,
            "user": self.limits.user,
        }
        with theirs:
            socket.send_fds(self._control, [channel.dumps(request)], [theirs.fileno()])
        return self._next_id, mine

    def _take_fork(self, fork_id: int, sock: socket.socket, memory_mb: int) -> _Child:
        if fork_id not in self._forked:
            self._read_control(10.0, lambda m: m.get("id") == fork_id)
        pid = self._forked.pop(fork_id, -1)
        if pid <= 0:
            sock.close()
            raise RuntimeError(
                f"the step sandbox could not start a step process: {self._fork_error}"
            )
        return _Child(pid, sock, memory_mb)

    def _new_child(self, memory_mb: int) -> _Child:
        self.start()
        if (
            self._spare is not None
            and self._spare_sock is not None
            and memory_mb == self.limits.memory_mb
        ):
            fork_id, sock = self._spare, self._spare_sock
            self._spare = self._spare_sock = None
        else:
            fork_id, sock = self._request_fork(memory_mb)
        return self._take_fork(fork_id, sock, memory_mb)

    def _prefork(self) -> None:
        """Have the next run's step process forked (and warmed up) ahead. Asked for after an
        execution rather than when a run takes the spare: the fork and the new process's
        start then overlap the engine's checkpoint, not the step that just began."""
        if self.prefork and self._spare is None and self._control is not None:
            self._spare, self._spare_sock = self._request_fork(self.limits.memory_mb)

    def _child_for(self, call: StepCall) -> _Child:
        if self._pid != os.getpid():
            self._forget_inherited()
        memory_mb = call.memory_mb or self.limits.memory_mb
        child = self._child
        if child is not None and (
            _idle_ended(child.sock)
            or call.process_key is None
            or child.key != call.process_key
            or child.memory_mb != memory_mb
        ):
            self._retire()
            child = None
        if child is None:
            child = self._new_child(memory_mb)
            child.key = call.process_key
            with self._lock:
                self._child = child
        return child

    def _forget_inherited(self) -> None:
        """In a forked process (an RQ work-horse): the zygote and its messages belong to the
        parent; this process starts its own rather than read the parent's replies."""
        socks = [self._control, self._spare_sock, self._child.sock if self._child else None]
        for sock in socks:
            if sock is not None:
                sock.close()
        # Kept, not collected: the parent's zygote is not this process's to wait for.
        self._parents_zygote = self._zygote
        self._zygote = self._control = self._child = None
        self._spare = self._spare_sock = None
        self._folder = ""
        self._forked.clear()
        self._statuses.clear()
        self._retired.clear()
        self._pid = os.getpid()

    def _retire(self) -> None:
        """Let the current step process go: it exits when its channel closes."""
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            self._forget(child.pid)
            child.sock.close()

    def _forget(self, pid: int) -> None:
        """No one will wait for this process's status: drop it, now or when it comes."""
        if self._statuses.pop(pid, None) is None:
            self._retired.add(pid)

    def end_run(self) -> None:
        """The run whose steps shared the step process ended: its process goes."""
        self._retire()

    def kill(self, reason: str = "canceled") -> None:
        """Kill the step process now (a cancel, a shutdown); returns at once. The execution
        in progress, if any, ends as ``killed`` with ``killed_for=reason``."""
        with self._lock:
            child = self._child
            idle = not self._running
            if not idle:  # also before the execution's process is there: it is not used
                self._killed_for = reason
            if child is None:
                return
            if idle:
                self._child = None
        with contextlib.suppress(OSError):
            os.killpg(child.pid, signal.SIGKILL)
        if idle:
            self._forget(child.pid)
            child.sock.close()

    def shut_down(self) -> None:
        """The engine is shutting down: kill the step in progress (it ends as ``killed`` for
        "shutdown") and end every later execution that way at once, without starting it, so
        that a run the engine is still advancing gives its next step back too."""
        with self._lock:
            self._shutting_down = True
        self.kill("shutdown")

    def close(self) -> None:
        """Kill the step process and stop the zygote."""
        self.kill("shutdown")
        self._retire()
        self._reset_zygote()

    def _stop(self, child: _Child, grace: float, wait: bool = True) -> int | None:
        """End the step process (SIGTERM, then SIGKILL after ``grace``); its wait status
        (not waited for when ``wait`` is false: it is known already)."""
        with self._lock:
            if self._child is child:
                self._child = None
        child.sock.close()
        if grace > 0:
            with contextlib.suppress(OSError):
                os.killpg(child.pid, signal.SIGTERM)
            status = self._status(child.pid, grace)
            if status is not None:
                return status
        with contextlib.suppress(OSError):
            os.killpg(child.pid, signal.SIGKILL)
        return self._status(child.pid, 5.0) if wait else None

    def _status(self, pid: int, timeout: float) -> int | None:
        if pid not in self._statuses:
            self._read_control(timeout, lambda m: m.get("pid") == pid and m["op"] == "exited")
        return self._statuses.pop(pid, None)

    # ------------------------------------------------------------------- executing
    def execute(self, call: StepCall, handler: StepHandler, logger: StepLogger) -> StepEnd:
        """Execute one step. Its log lines are appended to ``logger`` (within the limits),
        so that the engine writes them with its next record as it does today."""
        started = time.monotonic()
        with self._lock:
            if self._shutting_down:
                return StepEnd("killed", killed_for="shutdown", error=_STOPPED + "shutdown")
            self._killed_for = None
            self._running = True
        try:
            child = self._child_for(call)
            end = self._drive(child, call, handler, logger, started)
        finally:
            with self._lock:
                self._running = False
                self._killed_for = None
            self._prefork()
        end.seconds = time.monotonic() - started
        return end

    def _drive(
        self,
        child: _Child,
        call: StepCall,
        handler: StepHandler,
        logger: StepLogger,
        started: float,
    ) -> StepEnd:
        session = _Session(self.limits, call, handler, logger)
        # The step process raises StepTimeout at the timeout itself (a traceback of where
        # the step was); the kill follows when that does not end it.
        deadline = started + call.timeout + SOFT_GRACE
        try:
            try:
                if self._killed_for is not None:
                    raise channel.ChannelClosed("killed before it began")
                channel.send(child.sock, {"op": "step"}, channel.dumps(call.spec(self.limits)))
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError
                    if not self._readable(child, remaining):
                        continue
                    child.sock.settimeout(remaining)
                    header, size = channel.recv_header(child.sock)
                    end = session.handle(child.sock, header, size)
                    if end is not None:
                        return session.finish(end)
            except TimeoutError:
                if self._killed_for is not None:
                    raise channel.ChannelClosed("killed") from None
                self._stop(child, min(self.limits.term_grace, 1.0))
                error = f"the step timed out after {call.timeout:g} s and its process was killed"
                return session.finish(StepEnd("error", error=error, ended="timeout"))
            except _Failed as failed:
                self._stop(child, 0)
                end = StepEnd("error", error=failed.error, ended=failed.ended)
                return session.finish(end)
        except channel.ChannelClosed:
            # Ended on its own, its status comes at once; alive, it closed its channel.
            status = None if self._killed_for else self._status(child.pid, 0.5)
            if status is None and self._killed_for is None:
                self._stop(child, 0)
                error = "the step's process closed its channel to the engine and was killed"
                return session.finish(StepEnd("error", error=error, ended="protocol"))
            if status is None:
                status = self._stop(child, 0)
            else:
                self._stop(child, 0, wait=False)  # what it started in its group goes too
            return session.finish(self._died(status, child.memory_mb))
        except BaseException:
            self._stop(child, 0)
            raise

    def _readable(self, child: _Child, timeout: float) -> bool:
        """Wait for the step process's next frame. Its end comes as the end of its channel,
        or as its exit status from the zygote when a process it started holds the channel
        open: then, once nothing is left to read, ``ChannelClosed``."""
        if child.pid in self._statuses:
            timeout = 0
        watched = [child.sock] if self._control is None else [child.sock, self._control]
        ready, _, _ = select.select(watched, [], [], timeout)
        if child.sock in ready:
            return True
        if self._control is not None and self._control in ready:
            self._read_control(0, lambda m: False)
        if child.pid in self._statuses:
            raise channel.ChannelClosed("its process ended")
        return False

    def _died(self, status: int | None, memory_mb: int) -> StepEnd:
        if self._killed_for is not None:
            reason = self._killed_for
            return StepEnd("killed", killed_for=reason, error=_STOPPED + reason)
        if status is None:
            return StepEnd("error", error="the step's process ended", ended="exited")
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = "unknown"
            error = f"the step's process was killed by signal {number} ({name})"
            return StepEnd("error", error=error, ended="signal")
        code = os.WEXITSTATUS(status)
        if code == MEMORY_EXIT:
            return StepEnd("error", error=memory_error(memory_mb), ended="memory")
        return StepEnd("error", error=f"the step's process exited with code {code}", ended="exited")


class _Session:
    """The engine's side of one execution's messages."""

    def __init__(
        self, limits: Limits, call: StepCall, handler: StepHandler, logger: StepLogger
    ) -> None:
        self.limits, self.call, self.handler, self.logger = limits, call, handler, logger
        self.budget = channel.LogBudget(limits.log_max_bytes)
        self.child_dropped = 0
        self.reads: dict[str, Any] | None = None
        self.requests: list[FlowRequest] = []
        self.wait_until: datetime | None = None

    def _too_large(self, what: str, size: int) -> _Failed:
        limit = self.limits.output_max_bytes
        return _Failed(
            "size",
            f"{what} is {channel.size_text(size)} of JSON, more than the limit of "
            f"{channel.size_text(limit)} (STEP_OUTPUT_MAX_BYTES)",
        )

    def _payload(self, sock: socket.socket, size: int, limit: int, what: str) -> Any:
        if size > limit:
            if what:
                raise self._too_large(what, size)
            raise _Failed("protocol", f"the step's process sent a message of {size} bytes")
        return channel.recv_payload(sock, size)

    def handle(self, sock: socket.socket, header: dict[str, Any], size: int) -> StepEnd | None:
        op = header.get("op")
        output_max = self.limits.output_max_bytes
        if op == "log":
            self.log(self._payload(sock, size, LOG_FRAME_MAX, ""))
            return None
        if op == "done":
            return self.done(sock, header, size)
        key = str(header.get("key", ""))
        what = f"the result of task {key!r}" if op == "task_put" else ""
        value = self._payload(sock, size, output_max, what)
        if self.wait_until is not None:
            self.reply(sock, {"stop": "wait", "until": self.wait_until.isoformat()})
            return None
        try:
            reply, payload = self.answer(op, header, value)
        except WaitRequested as wait:
            self.wait_until = wait.until
            reply, payload = {"stop": "wait", "until": wait.until.isoformat()}, b""
        except Exception as exc:  # the step sees it, as it would have in-process
            reply, payload = {"raise": type(exc).__name__, "message": str(exc)}, b""
        self.reply(sock, reply, payload)
        return None

    @staticmethod
    def reply(sock: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
        channel.send(sock, header, payload)

    def answer(self, op: Any, header: dict[str, Any], value: Any) -> tuple[dict[str, Any], bytes]:
        handler = self.handler
        if op == "task_get":
            found, result = handler.task_result(str(header["key"]))
            return ({"found": True}, channel.dumps(result)) if found else ({"found": False}, b"")
        if op == "task_put":
            handler.record_task(str(header["key"]), value)
            return {}, b""
        if op == "email":
            message = value if isinstance(value, dict) else {}
            handler.send_email(
                message.get("to"),
                str(message.get("subject", "")),
                str(message.get("text", "")),
                message.get("html"),
            )
            return {}, b""
        if op == "suspend":
            seconds = float(header["seconds"])
            links = self._links(handler.suspend(seconds))
            self.requests.append(FlowRequest("suspend", {"timeout": seconds}))
            return links, b""
        if op == "rerun":
            delay, retries = float(header["delay"]), int(header["max_retries"])
            links = self._links(handler.rerun(delay, value, retries))
            args = {"delay": delay, "context": value, "max_retries": retries}
            self.requests.append(FlowRequest("rerun", args))
            return links, b""
        if op == "wait":
            key, seconds = str(header["key"]), float(header["seconds"])
            self.requests.append(FlowRequest("wait", {"key": key, "seconds": seconds}))
            handler.wait(key, seconds)
            return {}, b""
        raise _Failed("protocol", f"the step's process sent an unknown message {op!r}")

    @staticmethod
    def _links(links: Any) -> dict[str, Any]:
        return {"resume_url": links.resume_url, "cancel_url": links.cancel_url}

    def log(self, lines: Any) -> None:
        if not isinstance(lines, list):
            raise _Failed("protocol", "the step's process sent log lines that are not a list")
        for raw in lines:
            if not isinstance(raw, dict):
                continue
            level = raw.get("level")
            fields = raw.get("fields")
            line = {
                "step_name": self.call.name,
                "attempt": self.call.run.attempt,
                "level": level if level in LOG_LEVELS else "info",
                "message": str(raw.get("message", "")),
                "fields": fields if isinstance(fields, dict) else None,
                "created_at": _when(raw.get("created_at")),
            }
            if self.budget.admit(line):
                self.logger.lines.append(line)

    def done(self, sock: socket.socket, header: dict[str, Any], size: int) -> StepEnd:
        self.child_dropped = int(header.get("dropped") or 0)
        self.reads = _reads(header.get("reads"))
        kind = header.get("kind")
        if self.wait_until is not None:
            return StepEnd("wait", wait_until=self.wait_until)
        if kind == "ok":
            output = self._payload(sock, size, self.limits.output_max_bytes, "the step's output")
            return StepEnd("ok", output=output)
        if kind == "exit":
            return StepEnd("exit", exit_reason=header.get("reason"))
        if kind == "error":
            # A traceback of at most 64 KiB, as JSON (escapes can make it up to 6 times longer).
            text = self._payload(sock, size, 8 * channel.LOG_LINE_MAX, "")
            summary = str(header.get("summary") or "")
            if header.get("memory"):
                memory = memory_error(self.call.memory_mb or self.limits.memory_mb)
                return StepEnd("error", error=f"{memory}\n{text}", summary=memory, ended="memory")
            return StepEnd(
                "error", error=channel.cut_line(str(text)), summary=summary, ended="raised"
            )
        raise _Failed("protocol", f"the step's process ended in an unknown way {kind!r}")

    def finish(self, end: StepEnd) -> StepEnd:
        end.requests = self.requests
        end.reads = self.reads
        if end.summary is None and end.error is not None:
            end.summary = end.error.splitlines()[0]
        self.budget.dropped += self.child_dropped
        dropped = self.budget.dropped_line()
        if dropped is not None:
            self.logger.lines.append(
                {
                    "step_name": self.call.name,
                    "attempt": self.call.run.attempt,
                    "level": "warning",
                    "message": dropped,
                    "fields": None,
                    "created_at": utcnow(),
                }
            )
        return end


def _reads(value: Any) -> dict[str, Any] | None:
    """The reads a step process reported, if they have the shape ``Reads.record`` gives."""
    if not isinstance(value, dict):
        return None
    fields, steps = value.get("input"), value.get("steps")
    if fields != "*" and not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
        return None
    if not (isinstance(steps, list) and all(isinstance(n, str) for n in steps)):
        return None
    return {"input": fields, "steps": steps}


def memory_error(memory_mb: int) -> str:
    return f"the step exceeded the memory limit of {memory_mb} MB (STEP_MEMORY_MB)"


def _idle_ended(sock: socket.socket) -> bool:
    """Whether an idle step process's channel shows its end (an idle one sends nothing)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def _when(value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return utcnow()
    return when if when.tzinfo is not None else utcnow()
