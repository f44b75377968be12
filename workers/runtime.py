"""The step runtime: the ``ctx`` object a step's ``run(ctx)`` receives, and the execution of one
step with its timeout, captured output and error.

Nothing here changes a run's status; results go back to ``console.runs`` through the runner.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import linecache
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import CodeType, MappingProxyType
from typing import Any, Protocol


def utcnow() -> datetime:
    # Not console.timeutil's: the step process imports this module and must not import the
    # console package (Flask, SQLAlchemy) before it executes step code.
    return datetime.now(UTC)


class StepTimeout(Exception):
    pass


class FlowExit(BaseException):
    """``ctx.flow.exit()``: not an Exception, so a step's ``except Exception`` cannot eat it."""

    def __init__(self, reason: Any = None):
        super().__init__(reason)
        self.reason = reason


class ClaimLost(BaseException):
    """Another worker owns the run now; this execution must stop without recording."""


class NotSerialisable(TypeError):
    pass


class WaitRequested(BaseException):
    """``ctx.wait``: end this execution now; the step executes again at ``until``."""

    def __init__(self, until: datetime):
        super().__init__(until)
        self.until = until


def seconds_of(value: Any, what: str) -> float:
    """A duration given as seconds or a ``timedelta``."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds or a timedelta")
    if value < 0:
        raise ValueError(f"{what} cannot be negative")
    return float(value)


class Control(Protocol):
    """What a step's ``ctx`` asks of the engine that runs it (``workers.execution.Execution``)."""

    def suspend(self, seconds: float) -> Any: ...

    def rerun(self, delay: float, context: Any, max_retries: int) -> Any: ...

    def wait(self, key: str, seconds: float) -> None: ...

    def send_email(self, to: Any, subject: str, text: str, html: str | None) -> None: ...


def to_json(value: Any, what: str) -> Any:
    """Round-trip through JSON so that first executions and replays see the same value."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise NotSerialisable(f"{what} must be JSON-serialisable: {exc}") from None


# ----------------------------------------------------------------------------- ctx parts


class StepLogger:
    """``ctx.logger``: structured lines kept with the run, written with the next checkpoint."""

    def __init__(self, step: str, attempt: int) -> None:
        self.step = step
        self.attempt = attempt
        self.lines: list[dict[str, Any]] = []

    def _log(self, level: str, message: Any, fields: dict[str, Any]) -> None:
        safe = to_json(fields, "log fields") if fields else None
        self.lines.append(
            {
                "step_name": self.step,
                "attempt": self.attempt,
                "level": level,
                "message": str(message),
                "fields": safe,
                "created_at": utcnow(),
            }
        )

    def debug(self, message: Any, **fields: Any) -> None:
        self._log("debug", message, fields)

    def info(self, message: Any, **fields: Any) -> None:
        self._log("info", message, fields)

    def warning(self, message: Any, **fields: Any) -> None:
        self._log("warning", message, fields)

    def error(self, message: Any, **fields: Any) -> None:
        self._log("error", message, fields)

    def drain(self) -> list[dict[str, Any]]:
        lines, self.lines = self.lines, []
        return lines


class PrintCapture(io.TextIOBase):
    """Turns ``print()`` output into log lines, one per line of text."""

    def __init__(self, logger: StepLogger) -> None:
        self.logger = logger
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            self.logger._log("print", line, {})
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.logger._log("print", self.pending, {})
            self.pending = ""


@dataclass(frozen=True)
class StepResult:
    """An earlier step's result as ``ctx.steps[name]`` shows it."""

    name: str
    status: str
    output: Any = None
    resume_data: Any = None
    timed_out: bool = False


class Reads:
    """What one step execution read of the run's input and of earlier steps: a smart re-run
    executes a step again only when something it read changes. ``input`` is a set of field
    names, or ``None`` once the input was read whole (iterated, copied, compared)."""

    def __init__(self) -> None:
        self.input: set[str] | None = set()
        self.steps: set[str] = set()

    def field(self, key: Any) -> None:
        if self.input is not None:
            self.input.add(str(key))

    def whole_input(self) -> None:
        self.input = None

    def record(self) -> dict[str, Any]:
        fields: Any = "*" if self.input is None else sorted(self.input)
        return {"input": fields, "steps": sorted(self.steps)}


class ReadInput(dict[str, Any]):
    """``ctx.input``: a plain dict to the step's code (``json.dumps``, ``dict(...)``, ``**``
    all work) that notes which fields it reads. Anything that sees every field at once
    (iterating, copying, comparing, printing) reads the whole input."""

    def __init__(self, data: Mapping[str, Any], reads: Reads) -> None:
        super().__init__(data)
        self._reads = reads

    def __getitem__(self, key: Any) -> Any:
        self._reads.field(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._reads.field(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._reads.field(key)
        return super().__contains__(key)

    def _whole(self) -> None:
        self._reads.whole_input()

    def __iter__(self) -> Iterator[str]:
        self._whole()
        return super().__iter__()

    def keys(self) -> Any:
        self._whole()
        return super().keys()

    def values(self) -> Any:
        self._whole()
        return super().values()

    def items(self) -> Any:
        self._whole()
        return super().items()

    def __len__(self) -> int:
        self._whole()
        return super().__len__()

    def __eq__(self, other: object) -> bool:
        self._whole()
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._whole()
        return super().__repr__()

    def copy(self) -> dict[str, Any]:
        self._whole()
        return dict(super().items())

    def __copy__(self) -> dict[str, Any]:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(self.copy(), memo)

    def __reduce__(self) -> Any:
        return (dict, (self.copy(),))


class Steps(Mapping[str, StepResult]):
    """``ctx.steps``: earlier steps by name, with item and attribute access. With ``reads``,
    it notes the steps read (iterating over them reads them all)."""

    def __init__(self, results: dict[str, StepResult], reads: Reads | None = None) -> None:
        self._results = results
        self._reads = reads

    def __getitem__(self, name: str) -> StepResult:
        try:
            result = self._results[name]
        except KeyError:
            known = ", ".join(self._results) or "none yet"
            raise KeyError(f"no earlier step named {name!r} (completed: {known})") from None
        if self._reads is not None:
            self._reads.steps.add(name)
        return result

    def __getattr__(self, name: str) -> StepResult:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    def __iter__(self) -> Iterator[str]:
        if self._reads is not None:
            self._reads.steps.update(self._results)
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


@dataclass
class RunInfo:
    """``ctx.run``."""

    id: str
    runs: int = 1
    attempt: int = 1
    context: Any = None
    callback_request: Any = None
    recovered: bool = False
    previous_output: Any = None


class Flow:
    """``ctx.flow``: control of the run from inside a step."""

    def __init__(self, control: Control | None = None) -> None:
        self._control = control

    def _engine(self, what: str) -> Control:
        if self._control is None:
            raise RuntimeError(f"ctx.flow.{what} is not available here")
        return self._control

    def exit(self, reason: Any = None) -> None:
        raise FlowExit(reason)

    def suspend(self, timeout: Any = 86400) -> Any:
        """Suspend the run at the end of this step; returns links (resume_url, cancel_url)."""
        seconds = seconds_of(timeout, "ctx.flow.suspend timeout")
        if seconds <= 0:
            raise ValueError("ctx.flow.suspend timeout must be positive")
        return self._engine("suspend").suspend(seconds)

    def rerun(self, delay: Any, context: Any = None, max_retries: int = 10) -> Any:
        """Run this step again after ``delay`` seconds; returns links."""
        seconds = seconds_of(delay, "ctx.flow.rerun delay")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError("ctx.flow.rerun max_retries must be a non-negative integer")
        safe = to_json(context, "ctx.flow.rerun context")
        return self._engine("rerun").rerun(seconds, safe, max_retries)


TaskRecorder = Callable[[str, Any], None]


@dataclass
class Context:
    """The ``ctx`` given to ``run(ctx)``."""

    input: dict[str, Any]
    steps: Steps
    run: RunInfo
    logger: StepLogger
    workflow: str
    version: str
    step_name: str
    tasks: dict[str, Any]
    record_task: TaskRecorder
    flow: Flow = field(default_factory=Flow)
    secrets: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def idempotency_key(self) -> str:
        return f"{self.run.id}:{self.step_name}:{self.run.runs}"

    def task(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` once per key per step per run; later calls return the recorded result."""
        if not isinstance(key, str) or not key or len(key) > 255 or "\x00" in key:
            raise ValueError(
                "ctx.task key must be a non-empty string of at most 255 characters, without NUL"
            )
        if key in self.tasks:
            return copy.deepcopy(self.tasks[key])
        result = to_json(fn(*args, **kwargs), f"the result of task {key!r}")
        self.record_task(key, result)
        self.tasks[key] = result
        return copy.deepcopy(result)

    def wait(self, key: str, seconds: Any) -> None:
        """A durable delay: the first call ends this execution; the step executes again from
        the top when the time is up, and then this call returns."""
        if not isinstance(key, str) or not key or len(key) > 200 or "\x00" in key:
            raise ValueError(
                "ctx.wait key must be a non-empty string of at most 200 characters, without NUL"
            )
        self._control_for("wait").wait(key, seconds_of(seconds, "ctx.wait seconds"))

    def send_email(self, to: Any, subject: str, text: str, html: str | None = None) -> None:
        """Send an email (kept in the Outbox); at most once per execution and call."""
        self._control_for("send_email").send_email(to, str(subject), str(text), html)

    def _control_for(self, what: str) -> Control:
        return self.flow._engine(what)


# ------------------------------------------------------------------------ executing code

_compiled: dict[tuple[str, str], CodeType] = {}


def compile_step(name: str, code: str) -> CodeType:
    # Keyed by the code itself: ids can repeat across databases, code cannot lie.
    key = (name, code)
    compiled = _compiled.get(key)
    if compiled is None:
        filename = f"<step {name}>"
        compiled = compile(code, filename, "exec")
        # Tracebacks show the step's source lines.
        lines = code.splitlines(keepends=True)
        linecache.cache[filename] = (len(code), None, lines, filename)
        _compiled[key] = compiled
    return compiled


@contextlib.contextmanager
def step_deadline(seconds: float, expired: list[bool] | None = None) -> Iterator[None]:
    """Raise StepTimeout in the step after ``seconds`` (appending to ``expired``). Needs the
    main thread (SIGALRM); elsewhere the lease, which stops being renewed past the deadline,
    bounds the step."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def _expired(signum: int, frame: Any) -> None:
        if expired is not None:
            expired.append(True)
        raise StepTimeout(
            f"the step timed out after {seconds:g} s: it took longer than its timeout "
            f"of {seconds:g} s"
        )

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def step_traceback(exc: BaseException) -> str:
    """The traceback from the step's own frames on, without the runtime's."""
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<step "):
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__)
    return "".join(lines).rstrip()


def call_step(compiled: CodeType, ctx: Context, timeout: float) -> Any:
    """Execute a step's code and return its JSON-safe output; exceptions propagate."""
    namespace: dict[str, Any] = {"__name__": f"step_{ctx.step_name}"}
    capture = PrintCapture(ctx.logger)
    with contextlib.redirect_stdout(capture), step_deadline(timeout):
        try:
            exec(compiled, namespace)
            run = namespace.get("run")
            if not callable(run):
                raise TypeError("the step's code does not define run(ctx)")
            output = run(ctx)
        finally:
            capture.flush()
    return to_json(output, "the step's return value")
