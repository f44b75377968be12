"""A run's journal (docs/runs.md#journal): the ordered trace of what the run recorded, as one
JSON document complete enough to continue the run on another console.

Built from the rows the engine keeps anyway (step checkpoints, task results, the Outbox,
waitpoints, log lines) plus ``RunEvent`` rows for what those overwrite or never held (the
start of every execution, failed attempts, rerun requests, pauses).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..extensions import db
from ..models import TERMINAL, LogLine, OutboxMessage, RunEvent, TaskResult, Waitpoint
from ..secrets import shown_task_result
from ..timeutil import isoformat, utcnow
from .start import get_run

FORMAT = "workflow-console/journal@1"
# ``ctx.wait`` keeps its deadline as a task result under this prefix (``workers.execution``).
WAIT_PREFIX = "__wait__/"
ENTRY_TYPES = (
    "step_started",
    "task",
    "email",
    "log",
    "suspended",
    "resumed",
    "rerun_requested",
    "callback",
    "wait",
    "step_completed",
    "step_failed",
    "paused",
    "unpaused",
    "run_finished",
)
# Entries recorded at the same instant keep the order in which they happen.
_RANK = {
    "step_started": 0,
    "task": 1,
    "wait": 1,
    "email": 1,
    "log": 1,
    "suspended": 2,
    "rerun_requested": 2,
    "callback": 3,
    "resumed": 3,
    "step_failed": 4,
    "step_completed": 4,
    "paused": 5,
    "unpaused": 5,
    "run_finished": 9,
}


def journal_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """A version's definition as a journal carries it: without the workflow's schedules."""
    return {k: v for k, v in definition.items() if k != "schedules"}


class _Trace:
    def __init__(self) -> None:
        self.items: list[tuple[Any, int, int, dict[str, Any]]] = []

    def add(self, at: Any, type_: str, step: str | None = None, runs: Any = None, **data: Any):
        entry: dict[str, Any] = {"seq": 0, "at": at, "type": type_}
        if step is not None:
            entry["step"] = step
            entry["runs"] = runs
        entry.update(data)
        self.items.append((at, _RANK[type_], len(self.items), entry))
        return entry


def build_journal(run_id: str) -> dict[str, Any]:
    """The journal of run ``run_id`` (``NotFound`` when there is none)."""
    run = get_run(run_id)
    trace = _Trace()
    events = db.session.execute(
        select(RunEvent).where(RunEvent.run_id == run.id).order_by(RunEvent.id)
    ).scalars()
    started: set[tuple[Any, Any, Any]] = set()
    for event in events:
        data = dict(event.data or {})
        if event.type == "step_started":
            started.add((event.step_name, event.runs, event.at))
        trace.add(event.at, event.type, event.step_name, event.runs, **data)
    waits = list(
        db.session.scalars(
            select(Waitpoint).where(Waitpoint.run_id == run.id).order_by("created_at")
        )
    )
    resumed_at: dict[tuple[str, int], Any] = {}
    for wp in waits:
        if wp.kind == "suspend":
            trace.add(
                wp.created_at,
                "suspended",
                wp.step_name,
                wp.runs,
                timeout_at=isoformat(wp.expires_at),
            )
            if wp.state in ("resumed", "timed_out") and wp.decided_at is not None:
                timed_out = wp.state == "timed_out"
                trace.add(
                    wp.decided_at,
                    "resumed",
                    wp.step_name,
                    wp.runs,
                    resume_data=None if timed_out else wp.payload,
                    timed_out=timed_out,
                )
                resumed_at[(wp.step_name, wp.runs)] = wp.decided_at
        elif wp.state == "resumed" and wp.decided_at is not None:
            trace.add(wp.decided_at, "callback", wp.step_name, wp.runs, callback_request=wp.payload)
    for row in run.steps:
        reused = {"reused": True, "reused_from": row.reused_from} if row.reused else {}
        if row.reused:
            at = row.finished_at or run.created_at
        else:
            if row.started_at is not None and (row.name, row.runs, row.started_at) not in started:
                trace.add(row.started_at, "step_started", row.name, row.runs, attempt=row.attempts)
            if row.status != "completed":
                continue
            # A suspended step completes when its link (or its timeout) resumes it.
            at = max(
                (t for t in (row.finished_at, resumed_at.get((row.name, row.runs))) if t),
                default=run.created_at,
            )
        trace.add(
            at,
            "step_completed",
            row.name,
            row.runs,
            output=row.output,
            resume_data=row.resume_data,
            timed_out=row.timed_out,
            content_hash=row.content_hash,
            reads=row.reads,
            **reused,
        )
    T, M, L = TaskResult.__table__.c, OutboxMessage.__table__.c, LogLine.__table__.c
    for task in db.session.execute(
        select(T.step_name, T.key, T.result, T.created_at).where(T.run_id == run.id).order_by(T.id)
    ):
        if task.key.startswith(WAIT_PREFIX):
            until = task.result.get("until") if isinstance(task.result, dict) else None
            trace.add(
                task.created_at,
                "wait",
                task.step_name,
                None,
                key=task.key[len(WAIT_PREFIX) :],
                until=until,
            )
        else:
            trace.add(
                task.created_at,
                "task",
                task.step_name,
                None,
                key=task.key,
                result=shown_task_result(task.result),
            )
    for message in db.session.execute(
        select(M.step_name, M.runs, M.recipients, M.subject, M.created_at)
        .where(M.run_id == run.id)
        .order_by(M.id)
    ):
        trace.add(
            message.created_at,
            "email",
            message.step_name,
            message.runs,
            to=list(message.recipients),
            subject=message.subject,
        )
    for line in db.session.execute(
        select(L.step_name, L.level, L.message, L.fields, L.created_at)
        .where(L.run_id == run.id)
        .order_by(L.id)
    ):
        trace.add(
            line.created_at,
            "log",
            line.step_name,
            None,
            level=line.level,
            message=line.message,
            fields=line.fields,
        )
    if run.status in TERMINAL:
        trace.add(
            run.finished_at or run.updated_at,
            "run_finished",
            status=run.status,
            output=run.output,
            error=run.error,
        )
    return {
        "format": FORMAT,
        "exported_at": isoformat(utcnow()),
        "run": {
            "id": run.id,
            "status": run.status,
            "trigger": run.trigger,
            "created_at": isoformat(run.created_at),
            "finished_at": isoformat(run.finished_at),
            "rerun_of": run.rerun_of,
            "recovered_from": run.recovered_from,
        },
        "workflow": run.workflow.name,
        "version": {
            "label": run.version.label,
            "definition": journal_definition(run.version.definition),
        },
        "input": run.input,
        "entries": _ordered(trace),
    }


def _ordered(trace: _Trace) -> list[dict[str, Any]]:
    """Entries in time order, numbered; step entries without ``runs`` (tasks, waits, log
    lines) take the execution that had started when they were recorded."""
    entries = [item[3] for item in sorted(trace.items, key=lambda i: (i[0], i[1], i[2]))]
    current: dict[str, Any] = {}
    for seq, entry in enumerate(entries, start=1):
        step = entry.get("step")
        if step is not None:
            if entry["type"] == "step_started":
                current[step] = entry["runs"]
            elif entry["runs"] is None:
                entry["runs"] = current.get(step, 1)
        entry["at"] = isoformat(entry["at"])
        entry["seq"] = seq
    return entries
