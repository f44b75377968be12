"""The step process side of the step sandbox: the zygote, and the process that executes steps.

``workers.sandbox`` starts ``zygote()`` once per engine as a fresh interpreter (never a fork of
the engine, so no app, configuration, secret key or connection exists in its memory) with a
filtered environment. The zygote imports the step runtime and the standard modules steps use,
then forks one step process per request. Each step process drops what it must not have before
it executes anything: file descriptors but its channel, the engine's user (``STEP_USER``), an
unbounded address space (``STEP_MEMORY_MB``); then it serves ``step`` frames until its channel
closes. ``ctx`` inside it reaches the engine only through that channel (``workers.channel``).

Standard library and ``workers.runtime`` only.

Long: over the house's ~500 lines because it is a program of its own (the zygote's loop, the
step process's isolation and its half of the protocol) that may import nothing of the console;
splitting it would mean more modules on the zygote's import path, which every step pays for.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import gc
import os
import pwd
import resource
import selectors
import shutil
import signal
import socket
import sys
import sysconfig
import tempfile
import threading
import traceback
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from . import channel
from .runtime import (
    Context,
    Flow,
    FlowExit,
    PrintCapture,
    ReadInput,
    Reads,
    RunInfo,
    StepLogger,
    StepResult,
    Steps,
    WaitRequested,
    compile_step,
    step_deadline,
    step_traceback,
    to_json,
)

# Imported by the zygote so that a step process has them without reading the interpreter's
# files, which STEP_USER may not be able to read (a pyenv in root's home folder).
PRELOAD = (  # noqa: SIM905 - a list of names to read, not to edit one by one
    "abc argparse array ast base64 binascii bisect calendar cmath collections "
    "collections.abc concurrent.futures contextlib copy csv dataclasses datetime decimal "
    "difflib email email.message email.mime.text email.mime.multipart email.utils enum "
    "fractions functools gzip hashlib heapq hmac html html.parser http http.client "
    "http.cookies io ipaddress itertools json locale logging math mimetypes numbers "
    "operator pathlib pprint queue quopri random re secrets shlex socket ssl statistics "
    "string struct subprocess tempfile textwrap threading time timeit tomllib typing "
    "unicodedata urllib urllib.error urllib.parse urllib.request uuid warnings "
    "xml.dom.minidom xml.etree.ElementTree zipfile zlib zoneinfo _strptime encodings.idna "
    "encodings.latin_1 encodings.ascii encodings.cp1252 encodings.utf_16 "
    "encodings.punycode sqlite3 shutil glob fnmatch asyncio pickle bz2 lzma platform inspect"
).split()

CHANNEL_FD = 3
MEMORY_EXIT = 86  # the step process's own code could not allocate: the memory cap
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, M_ARENA_MAX = 1, 38, -8


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


# ------------------------------------------------------------------------- the zygote


def zygote(control_fd: int) -> None:
    """Serve fork requests on ``control_fd`` (a SOCK_SEQPACKET socket) until it closes."""
    # No parent-death signal here (it follows the thread that started the zygote); the
    # zygote ends when the engine's end of the control socket closes, with the engine.
    libc = _libc()
    # glibc reserves 64 MiB of address space per thread arena; with the address-space cap a
    # step with a few threads would fail long before it used its memory.
    libc.mallopt(M_ARENA_MAX, 2)
    for name in PRELOAD:
        with contextlib.suppress(Exception):
            __import__(name)
    # Out of the collector's sight: a step process's first collection would otherwise touch
    # every preloaded object and copy each page the fork shared (measured: 68 ms against 9).
    gc.freeze()
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: dict[int, str] = {}
    # Each step process's folder is made in this one; the engine removes it with whatever a
    # killed step process left behind, once the zygote is gone. Others may pass, not list.
    tempfile.tempdir = tempfile.mkdtemp(prefix="steps-")
    os.chmod(tempfile.tempdir, 0o711)
    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    _reply(control, {"op": "ready", "pid": os.getpid(), "folder": tempfile.tempdir})
    try:
        while True:
            for key, _ in sel.select():
                if key.fileobj is control:
                    try:
                        data, fds, _flags, _addr = socket.recv_fds(control, 65536, 1)
                    except OSError:
                        data, fds = b"", []
                    if not data:
                        return
                    request = channel.json.loads(data)
                    if request.get("op") == "fork" and fds:
                        _fork(control, request, fds[0], children, [control_fd, wake_r, wake_w])
                    else:
                        for fd in fds:
                            os.close(fd)
                else:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    _reap(control, children)
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        shutil.rmtree(tempfile.tempdir, ignore_errors=True)


def _reply(control: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        control.send(channel.dumps(message))


def _reap(control: socket.socket, children: dict[int, str]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        workdir = children.pop(pid, None)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        _reply(control, {"op": "exited", "pid": pid, "status": status})


def _fork(
    control: socket.socket,
    request: dict[str, Any],
    chan_fd: int,
    children: dict[int, str],
    zygote_fds: list[int],
) -> None:
    try:
        user = _step_user(request.get("user"))
        workdir = tempfile.mkdtemp(prefix="step-")
        if user is not None:
            os.chown(workdir, user.pw_uid, user.pw_gid)
    except (KeyError, OSError) as exc:
        os.close(chan_fd)
        _reply(control, {"op": "fork_failed", "id": request["id"], "error": str(exc)})
        return
    zygote_pid = os.getpid()
    try:
        pid = os.fork()
    except OSError as exc:  # out of processes or memory: this request fails, not the zygote
        os.close(chan_fd)
        shutil.rmtree(workdir, ignore_errors=True)
        _reply(control, {"op": "fork_failed", "id": request["id"], "error": str(exc)})
        return
    if pid == 0:
        code = 70
        try:
            _become_step_process(chan_fd, request, user, workdir, zygote_pid, zygote_fds)
            code = serve(socket.socket(fileno=CHANNEL_FD))
        except MemoryError:
            code = MEMORY_EXIT
        finally:
            os._exit(code)
    os.close(chan_fd)
    children[pid] = workdir
    _reply(control, {"op": "forked", "id": request["id"], "pid": pid})


def _step_user(name: str | None) -> pwd.struct_passwd | None:
    """Whom the step process runs as: STEP_USER when the zygote is root, else itself."""
    if not name or os.geteuid() != 0:
        return None
    return pwd.getpwnam(name)


def _become_step_process(
    chan_fd: int,
    request: dict[str, Any],
    user: pwd.struct_passwd | None,
    workdir: str,
    zygote_pid: int,
    zygote_fds: list[int],
) -> None:
    signal.set_wakeup_fd(-1)
    for fd in zygote_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setpgid(0, 0)  # the engine kills the group: the step's own subprocesses too
    if chan_fd != CHANNEL_FD:
        os.dup2(chan_fd, CHANNEL_FD)
        os.close(chan_fd)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(CHANNEL_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    memory = int(request.get("memory_mb") or 0)
    if memory > 0:
        limit = memory * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if user is not None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        os.environ["HOME"] = workdir
    os.environ["TMPDIR"] = workdir
    libc = _libc()
    # After setuid, which clears it; a step process never outlives its zygote.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != zygote_pid:
        os._exit(70)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # no setuid programs to climb back with
    if user is not None:
        _explain_unreadable_modules(user.pw_name)
    os.chdir(workdir)
    tempfile.tempdir = workdir


class UnreadableModules:
    """Last on ``sys.meta_path`` when STEP_USER cannot read the interpreter's own modules: an
    import that nothing found says why, instead of only "No module named"."""

    def __init__(self, user: str, stdlib: str) -> None:
        self.user, self.stdlib = user, stdlib

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        raise ModuleNotFoundError(
            f"No module named {name!r}: step code runs as {self.user}, which cannot read "
            f"Python's own modules ({self.stdlib}); it can import those the step sandbox "
            f"loads ahead (workers.stepprocess.PRELOAD) and any that {self.user} can read",
            name=name,
        )


def _explain_unreadable_modules(user: str) -> None:
    stdlib = sysconfig.get_paths()["stdlib"]
    if not os.access(stdlib, os.R_OK | os.X_OK):
        sys.meta_path.append(UnreadableModules(user, stdlib))


# ---------------------------------------------------------------- the step process


@dataclass(frozen=True)
class FlowLinks:
    """What ``ctx.flow.suspend`` and ``ctx.flow.rerun`` return."""

    resume_url: str
    cancel_url: str


class Link:
    """The step process's end of the channel during one execution."""

    def __init__(self, sock: socket.socket, logger: ChannelLogger) -> None:
        self.sock = sock
        self.logger = logger
        self.lock = threading.RLock()
        self.open = True
        self.wait_until: datetime | None = None

    def request(self, header: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], Any]:
        with self.lock:
            if not self.open:
                raise RuntimeError("this step execution has ended")
            self.logger.flush()
            channel.send(self.sock, header, payload)
            try:
                reply, value = channel.recv(self.sock)
            except channel.ChannelClosed:
                os._exit(70)  # the engine is gone: nothing to report to
        if "raise" in reply:
            cls = getattr(builtins, str(reply["raise"]), None)
            if not (isinstance(cls, type) and issubclass(cls, Exception)):
                cls = RuntimeError
            raise cls(reply.get("message", ""))
        if reply.get("stop") == "wait":
            self.wait_until = datetime.fromisoformat(reply["until"])
            raise WaitRequested(self.wait_until)
        return reply, value

    def post(self, header: dict[str, Any], payload: bytes = b"") -> None:
        channel.send(self.sock, header, payload)


class ChannelLogger(StepLogger):
    """``ctx.logger`` whose lines go to the engine in batches, within the log limits."""

    BATCH_BYTES = 256 * 1024

    def __init__(self, step: str, attempt: int, budget: channel.LogBudget) -> None:
        super().__init__(step, attempt)
        self.budget = budget
        self.batch_start = 0
        self.link: Link | None = None

    def _log(self, level: str, message: Any, fields: dict[str, Any]) -> None:
        super()._log(level, message, fields)
        line = self.lines.pop()
        line["message"] = str(line["message"])
        if not self.budget.admit(line):
            return
        line["created_at"] = line["created_at"].isoformat()
        del line["step_name"], line["attempt"]  # the engine knows them
        self.lines.append(line)
        if self.budget.used - self.batch_start > self.BATCH_BYTES and self.link is not None:
            with self.link.lock:
                self.flush()

    def flush(self) -> None:
        """Send the pending lines; the caller holds the link's lock."""
        if self.lines and self.link is not None:
            lines, self.lines = self.lines, []
            self.batch_start = self.budget.used
            self.link.post({"op": "log"}, channel.dumps(lines))


class RemoteTasks(dict[str, Any]):
    """``ctx.task``'s record: the results the engine sent with the step when it did (then
    a key not among them is not recorded), else asked for once per key."""

    def __init__(self, link: Link, recorded: dict[str, Any] | None) -> None:
        super().__init__(recorded or {})
        self.link = link
        self.complete = recorded is not None

    def __contains__(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        if self.complete:
            return False
        reply, value = self.link.request({"op": "task_get", "key": key})
        if reply.get("found"):
            self[str(key)] = value
            return True
        return False


class ChildControl:
    """``runtime.Control`` over the channel."""

    def __init__(self, link: Link) -> None:
        self.link = link

    def suspend(self, seconds: float) -> FlowLinks:
        reply, _ = self.link.request({"op": "suspend", "seconds": seconds})
        return FlowLinks(reply["resume_url"], reply["cancel_url"])

    def rerun(self, delay: float, context: Any, max_retries: int) -> FlowLinks:
        header = {"op": "rerun", "delay": delay, "max_retries": max_retries}
        reply, _ = self.link.request(header, channel.dumps(context))
        return FlowLinks(reply["resume_url"], reply["cancel_url"])

    def wait(self, key: str, seconds: float) -> None:
        self.link.request({"op": "wait", "key": key, "seconds": seconds})

    def send_email(self, to: Any, subject: str, text: str, html: str | None) -> None:
        message = {"to": to, "subject": subject, "text": text, "html": html}
        self.link.request({"op": "email"}, channel.dumps(to_json(message, "the email")))


class ChildFlow(Flow):
    """``ctx.flow`` that remembers an exit even when the step's code catches it."""

    exited = False
    reason: Any = None

    def exit(self, reason: Any = None) -> None:
        self.exited, self.reason = True, reason
        raise FlowExit(reason)


WARM_UP = {
    "name": "warm_up",
    "code": "def run(ctx):\n    print('warm')\n    ctx.logger.info('up', n=1)\n    return {}",
    "run": {"id": "warm-up"},
    "steps": {"earlier": ["completed", {"a": 1}, None, False]},
    "tasks": {},
    "log_max_bytes": 1024,
}


def warm_up() -> None:
    """Execute a no-op step on a channel of its own: the pages its first step would touch
    are copied from the zygote now, while the process waits to be handed out (pre-forked),
    rather than during that step (measured: 1.4 ms cold)."""
    mine, theirs = socket.socketpair()
    with mine, theirs:
        execute(mine, dict(WARM_UP))
        channel.recv(theirs)  # the log batch
        channel.recv(theirs)  # done


def serve(sock: socket.socket) -> int:
    """Execute ``step`` frames until the channel closes; the process's exit code."""
    warm_up()
    while True:
        try:
            header, spec = channel.recv(sock)
        except channel.ChannelClosed:
            return 0
        if header.get("op") == "step" and not execute(sock, spec):
            return 0  # timed out: the alarm may have cut a frame, so a fresh process goes on


def _raised(exc: BaseException) -> str:
    args = ", ".join(repr(a) for a in exc.args)
    return f"{type(exc).__name__}({args})" if exc.args else type(exc).__name__


def execute(sock: socket.socket, spec: dict[str, Any]) -> bool:
    """One execution of one step, reported as one ``done`` frame; False when it timed out.

    At its timeout the step gets ``StepTimeout``, so that its traceback shows where it was;
    one whose code catches that fails all the same, and one that goes on past the deadline
    is killed by the engine."""
    name = spec["name"]
    run = spec.get("run") or {}
    budget = channel.LogBudget(int(spec["log_max_bytes"]))
    logger = ChannelLogger(name, int(run.get("attempt", 1)), budget)
    link = Link(sock, logger)
    logger.link = link
    flow = ChildFlow(ChildControl(link))
    steps = {n: StepResult(n, *values) for n, values in (spec.get("steps") or {}).items()}
    reads = Reads()
    ctx = Context(
        input=ReadInput(spec.get("input") or {}, reads),
        steps=Steps(steps, reads),
        run=RunInfo(**run),
        logger=logger,
        workflow=spec.get("workflow", ""),
        version=spec.get("version", ""),
        step_name=name,
        tasks=RemoteTasks(link, spec.get("tasks")),
        record_task=lambda key, result: _record(link, key, result),
        flow=flow,
        secrets=MappingProxyType(dict(spec.get("secrets") or {})),
    )
    done: dict[str, Any] = {"op": "done", "kind": "ok"}
    payload = b""
    out, err = PrintCapture(logger), PrintCapture(logger)
    timeout, expired = float(spec.get("timeout") or 0), list[bool]()
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            step_deadline(timeout, expired),
        ):
            try:
                namespace: dict[str, Any] = {"__name__": f"step_{name}"}
                exec(compile_step(name, spec["code"]), namespace)
                entry = namespace.get("run")
                if not callable(entry):
                    raise TypeError("the step's code does not define run(ctx)")
                output = entry(ctx)
                try:
                    payload = channel.dumps(output)
                except (TypeError, ValueError) as exc:
                    raise TypeError(
                        f"the step's return value must be JSON-serialisable: {exc}"
                    ) from None
            finally:
                out.flush()
                err.flush()
    except (FlowExit, WaitRequested):
        pass  # the flags below say which, also when the step's code caught it
    except MemoryError as exc:
        done.update(kind="error", memory=True, summary=_raised(exc))
        payload = channel.dumps(channel.cut_line(_error_text(exc)))
    except BaseException as exc:  # whatever the step raised fails it
        summary = f"{type(exc).__name__}: {exc}"
        text = _error_text(exc)
        if not isinstance(exc, Exception):
            text = f"the step raised {_raised(exc)}\n{text}"
            summary = f"raised {_raised(exc)}"
        done.update(kind="error", summary=channel.cut_line(summary, 1024))
        payload = channel.dumps(channel.cut_line(text))
    if expired and done["kind"] != "error":
        error = f"the step timed out after {timeout:g} s (its code caught the timeout)"
        done, payload = {"op": "done", "kind": "error", "summary": error}, channel.dumps(error)
    elif link.wait_until is not None:
        done, payload = {"op": "done", "kind": "wait", "until": link.wait_until.isoformat()}, b""
    elif flow.exited:
        reason = None if flow.reason is None else channel.cut_line(str(flow.reason), 4096)
        done, payload = {"op": "done", "kind": "exit", "reason": reason}, b""
    with link.lock:
        logger.flush()
        link.open = False
    done["dropped"] = budget.dropped
    done["reads"] = reads.record()
    try:
        channel.send(sock, done, payload)
    except channel.ChannelClosed:
        os._exit(70)
    return not expired


def _error_text(exc: BaseException) -> str:
    """The step's own traceback; only the message when no frame of the step's is in it (its
    code does not compile, or defines no ``run``): the sandbox's frames say nothing to a user."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith("<step "):
            return step_traceback(exc)
        tb = tb.tb_next
    return "".join(traceback.format_exception_only(type(exc), exc)).rstrip()


def _record(link: Link, key: str, result: Any) -> None:
    link.request({"op": "task_put", "key": key}, channel.dumps(result))
