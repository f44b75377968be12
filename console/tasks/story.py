"""The read side of the run page: one run's whole story (its steps, their log lines, what was
replayed, the actions its state allows, where it came from and its re-runs) and the stamp its
live section polls with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from .. import runs as domain
from ..extensions import db
from ..links import links_visible, mask_links
from ..models import LogLine, Run
from ..serialize import run_detail
from ..timeutil import isoformat
from .queries import approval_emails, open_waits, stamp
from .timeline import step_times

LOG_LIMIT = 2000


def run_stamp(run_id: str) -> str | None:
    row = db.session.execute(
        select(Run.updated_at, Run.status, Run.current_step).where(Run.id == run_id)
    ).first()
    return stamp(row) if row is not None else None


@dataclass(frozen=True)
class ShownLine:
    """A log line as the run page shows it: a copy, so that masking its links never touches
    the stored row."""

    step_name: str | None
    attempt: int
    level: str
    message: str
    fields: Any
    created_at: datetime

    @classmethod
    def of(cls, line: LogLine, links: bool) -> ShownLine:
        message, fields = (line.message, line.fields)
        if not links:
            message, fields = mask_links(message), mask_links(fields)
        return cls(line.step_name, line.attempt, line.level, message, fields, line.created_at)


@dataclass(frozen=True)
class Rerun:
    id: str
    status: str
    created_at: str | None


def lineage(run: Run, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs this one came from and those that re-run it, and which of the ids it names
    are runs of this console (a journal's run may be another console's): those are links."""
    reruns = [Rerun(r.id, r.status, isoformat(r.created_at)) for r in domain.reruns_of(run.id)]
    named = {run.rerun_of, run.recovered_from} | {s.get("reused_from") for s in steps}
    named.discard(None)
    here = set(db.session.scalars(select(Run.id).where(Run.id.in_(named)))) if named else set()
    return {
        "rerun_of": run.rerun_of,
        "recovered_from": run.recovered_from,
        "reruns": reruns,
        "here": here | {r.id for r in reruns},
    }


def run_story(run_id: str) -> dict[str, Any]:
    """Everything the run page shows: the run, a timeline of its steps with their log lines,
    which steps were replayed from their checkpoints, and the actions its state allows."""
    run = domain.get_run(run_id)
    shown = links_visible()
    detail = run_detail(run, links=shown)
    rows = {r.name: r for r in run.steps}
    logs = [
        ShownLine.of(line, shown)
        for line in db.session.scalars(
            select(LogLine).where(LogLine.run_id == run.id).order_by(LogLine.id).limit(LOG_LIMIT)
        )
    ]
    by_step: dict[str | None, list[ShownLine]] = {}
    for line in logs:
        by_step.setdefault(line.step_name, []).append(line)
    times = step_times(run)
    for position, view in enumerate(detail["steps"]):
        row = rows.get(view["name"])
        view["time"] = times.get(view["name"])
        view["replayed"] = bool(
            row is not None
            and row.status == "completed"
            and run.replayed_at is not None
            and row.finished_at is not None
            and row.finished_at <= run.replayed_at
        )
        view["sleep_reason"] = row.sleep_reason if row is not None else None
        view["logs"] = by_step.pop(view["name"], [])
        view["current"] = position == run.current_step and not run.is_terminal
        # The API says pending (a step never reached has no status of its own); the page
        # says what it means.
        view["not_run"] = row is None and run.is_terminal and view["status"] == "pending"
    wait = open_waits([run.id]).get(run.id)
    # A step waiting for a decision has moved the run past itself, but it is not done.
    done = min(run.current_step - (1 if wait else 0), run.step_count)
    return {
        "done_steps": max(0, done),
        "waited_ms": sum(t.waited_ms for t in times.values()),
        "email": approval_emails([run.id]).get(run.id) if wait else None,
        "lineage": lineage(run, detail["steps"]),
        "run": detail,
        "steps": detail["steps"],
        "other_logs": [line for lines in by_step.values() for line in lines],
        "log_count": len(logs),
        "log_limit": LOG_LIMIT,
        "allowed": domain.allowed_actions(run.status, run.paused_from, wait is not None),
        "deadline": isoformat(wait[1]) if wait else None,
        "waiting_step": wait[0] if wait else None,
        "replays": run.replays,
        "replayed_at": isoformat(run.replayed_at),
        "wake_at": isoformat(run.wake_at),
        "paused_from": run.paused_from,
        "terminal": run.is_terminal,
        "stamp": stamp(run),
    }
