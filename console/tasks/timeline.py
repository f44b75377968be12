"""Where a run's time went, step by step, for the run page: each execution of a step (every
attempt, every execution after a ``ctx.wait`` or ``ctx.flow.rerun``) with its own start,
duration and error, and the time the step spent waiting (sleeping, suspended) apart from the
time it computed.

A ``StepRun`` row holds only the last execution; the ``RunEvent`` rows hold the start of every
execution a later one overwrote and the end of every failed attempt; ``Waitpoint`` rows hold
when a suspend began and was decided; a ``ctx.wait`` deadline's task result holds when the
step went to sleep."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from ..extensions import db
from ..models import Run, RunEvent, StepRun, TaskResult, Waitpoint
from ..runs import WAIT_PREFIX
from ..timeutil import isoformat, utcnow

# How an execution ended, and what the step did after it until its next execution.
AFTER = {"failed": "retry backoff", "slept": "sleeping (ctx.wait)", "rerun": "re-run delay"}


@dataclass
class Execution:
    """One execution of a step, as the timeline lists it."""

    is_wait = False
    attempt: int
    runs: int
    started: datetime
    ended: datetime | None = None
    duration_ms: int | None = None
    outcome: str = "running"  # failed, slept, rerun, or the step's status for the last one
    error: str | None = None

    @property
    def started_at(self) -> str | None:
        return isoformat(self.started)

    @property
    def error_line(self) -> str:
        lines = [line for line in (self.error or "").strip().splitlines() if line.strip()]
        return lines[-1][:200] if lines else ""


@dataclass
class Wait:
    """A stretch of time the step spent not executing."""

    is_wait = True
    kind: str  # "sleeping (ctx.wait)", "retry backoff", "re-run delay", "suspended", ...
    start: datetime
    end: datetime | None  # None: still waiting
    ms: int
    state: str | None = None  # a suspend's outcome: open, resumed, timed_out, canceled, ...

    @property
    def started_at(self) -> str | None:
        return isoformat(self.start)

    @property
    def ended_at(self) -> str | None:
        return isoformat(self.end)


@dataclass
class StepTime:
    executions: list[Execution] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)

    @property
    def compute_ms(self) -> int | None:
        known = [e.duration_ms for e in self.executions if e.duration_ms is not None]
        return sum(known) if known else None

    @property
    def entries(self) -> list[Execution | Wait]:
        """Executions and waits in the order they happened."""
        timed: list[Execution | Wait] = [*self.executions, *self.waits]
        return sorted(timed, key=lambda e: e.started if isinstance(e, Execution) else e.start)

    @property
    def waited_ms(self) -> int:
        return sum(w.ms for w in self.waits)

    @property
    def waiting(self) -> bool:
        return any(w.end is None for w in self.waits)


def _ms(start: datetime, end: datetime) -> int:
    return max(0, int((end - start).total_seconds() * 1000))


def step_times(run: Run) -> dict[str, StepTime]:
    """Each executed step's executions and waits, by step name."""
    events = list(
        db.session.scalars(
            select(RunEvent)
            .where(RunEvent.run_id == run.id, RunEvent.step_name.is_not(None))
            .order_by(RunEvent.id)
        )
    )
    slept = db.session.execute(
        select(TaskResult.step_name, TaskResult.created_at).where(
            TaskResult.run_id == run.id, TaskResult.key.startswith(WAIT_PREFIX)
        )
    ).all()
    suspends = list(
        db.session.scalars(
            select(Waitpoint).where(Waitpoint.run_id == run.id, Waitpoint.kind == "suspend")
        )
    )
    now = run.finished_at or utcnow()
    times = {}
    for row in run.steps:
        if row.reused or row.started_at is None:
            continue
        mine = [e for e in events if e.step_name == row.name]
        sleeps = sorted(at for name, at in slept if name == row.name)
        times[row.name] = StepTime(_executions(row, mine, sleeps))
        times[row.name].waits = _waits(row, times[row.name].executions, suspends, now)
    return times


def _executions(row: StepRun, events: list[RunEvent], sleeps: list[datetime]) -> list[Execution]:
    """Every execution of the step, oldest first, each with how it ended."""
    runs: list[Execution] = []
    for event in events:
        data = event.data or {}
        if event.type == "step_started":
            runs.append(Execution(int(data.get("attempt") or 1), event.runs or 1, event.at))
        elif runs and event.type == "step_failed":
            last = runs[-1]
            last.ended, last.outcome, last.error = event.at, "failed", data.get("error")
        elif runs and event.type == "rerun_requested":
            runs[-1].ended, runs[-1].outcome = event.at, "rerun"
    if not runs or runs[-1].started != row.started_at:
        assert row.started_at is not None
        runs.append(Execution(row.attempts or 1, row.runs, row.started_at))
    last = runs[-1]
    # The step's row tells how its last execution went.
    last.outcome, last.duration_ms = row.status, row.duration_ms
    last.error = row.error if row.status == "failed" else last.error
    last.ended = row.finished_at if row.status != "running" else None
    if row.status == "sleeping" and row.sleep_reason == "wait":
        last.outcome = "slept"
    for execution, following in zip(runs, runs[1:], strict=False):
        if execution.ended is None:  # it went to sleep in ctx.wait
            execution.ended = next(
                (at for at in sleeps if execution.started <= at <= following.started), None
            )
            execution.outcome = "slept"
        if execution.ended is not None and execution.duration_ms is None:
            execution.duration_ms = _ms(execution.started, execution.ended)
    return runs


def _waits(
    row: StepRun, runs: list[Execution], suspends: list[Waitpoint], now: datetime
) -> list[Wait]:
    """The time between the step's executions, a sleep still going on, and its suspends."""
    waits = []
    for execution, following in zip(runs, runs[1:], strict=False):
        if execution.ended is not None:
            kind, start, end = (
                AFTER.get(execution.outcome, "waiting"),
                execution.ended,
                following.started,
            )
            waits.append(Wait(kind, start, end, _ms(start, end)))
    last = runs[-1]
    if row.status == "sleeping" and last.ended is not None:
        kind = {"retry": "retry backoff", "rerun": "re-run delay"}.get(
            row.sleep_reason or "", "sleeping (ctx.wait)"
        )
        waits.append(Wait(kind, last.ended, None, _ms(last.ended, now)))
    for wp in suspends:
        if wp.step_name != row.name:
            continue
        began = wp.created_at
        ended = next((e.ended for e in runs if e.runs == wp.runs and e.ended), None)
        if ended is not None and ended > began:
            began = ended  # waiting began when the step's execution ended
        over = wp.decided_at
        if over is None and wp.state != "open":
            over = row.finished_at if row.finished_at and row.finished_at > began else began
        waits.append(Wait("suspended", began, over, _ms(began, over or now), wp.state))
    return waits
