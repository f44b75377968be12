"""Firing schedules: one run per (schedule, fire time), guaranteed by the ``ScheduleFire``
unique row inserted in the same transaction as the run (``fire``, called by the worker job);
missed fires after an outage follow the per-schedule policy ``skip``, ``latest`` (default) or
``all`` (``catch_up``, called by the scheduler process, which registers ``active_schedules``).
A schedule whose ``overlap`` is ``skip`` records a fire while its previous run is unfinished as
``skipped`` and starts nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from croniter.croniter import CroniterError
from sqlalchemy import exists, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import ValidationFailed
from ..extensions import db, write_transaction
from ..models import ACTIVE, Run, Schedule, ScheduleFire, WorkflowVersion
from .cron import fire_times, is_fire_time, next_fire, previous_fire

log = logging.getLogger(__name__)

# Fires examined per schedule per reconcile pass; "all" catches up on longer outages over
# several passes, "latest" and "skip" jump to the latest missed fire.
CATCH_UP_BATCH = 500


# ----------------------------------------------------------------- the domain: registering


@dataclass(frozen=True)
class Active:
    """An enabled schedule of a workflow with a published version, as the scheduler sees it."""

    id: int
    name: str
    cron: str
    timezone: str
    missed: str
    watermark: datetime
    next_fire_at: datetime


def active_schedules(now: datetime) -> dict[int, Active]:
    """Every schedule that should fire, with its next fire time; records that next fire time
    (and, for a schedule that has just become active, a fresh watermark) on the row."""
    published = exists().where(
        WorkflowVersion.workflow_id == Schedule.workflow_id, WorkflowVersion.deleted_at.is_(None)
    )
    rows = db.session.execute(
        select(
            Schedule.id,
            Schedule.name,
            Schedule.cron,
            Schedule.timezone,
            Schedule.missed,
            Schedule.enabled,
            Schedule.last_fire_at,
            Schedule.next_fire_at,
            published.label("published"),
        )
    ).all()
    db.session.commit()
    active: dict[int, Active] = {}
    changes: list[dict[str, Any]] = []
    for row in rows:
        if not (row.enabled and row.published):
            if row.next_fire_at is not None:
                changes.append({"id": row.id, "next_fire_at": None})
            continue
        try:
            upcoming = next_fire(row.cron, row.timezone, now)
        except (CroniterError, ValueError, StopIteration):
            log.warning("schedule %s (%s) has no next fire time", row.id, row.cron)
            continue
        watermark = row.last_fire_at
        change: dict[str, Any] = {}
        if row.next_fire_at is None:  # just became active: nothing before now is missed
            watermark = max(now, watermark) if watermark else now
            change["last_fire_at"] = watermark
        if row.next_fire_at != upcoming:
            change["next_fire_at"] = upcoming
        if change:
            changes.append({"id": row.id, **change})
        active[row.id] = Active(
            row.id, row.name, row.cron, row.timezone, row.missed, watermark or now, upcoming
        )
    if changes:
        write_transaction()
        for change in changes:
            db.session.execute(
                update(Schedule)
                .where(Schedule.id == change.pop("id"))
                .values(**change)
                .execution_options(synchronize_session=False)
            )
        db.session.commit()
    return active


def catch_up(
    schedule: Active,
    now: datetime,
    pending: Callable[[datetime], bool],
    start: Callable[[datetime, str], None],
) -> None:
    """Settle the fire times between the schedule's watermark and ``now``.

    A fire time with a fire row is done; one whose job is still waiting or executing
    (``pending``) is left to it; any other was missed (the scheduler or Redis was down) and
    the schedule's policy decides: ``latest`` starts one run for the latest missed fire,
    ``all`` one per missed fire, ``skip`` none; each is recorded with a note. ``start``
    enqueues the fire job of a missed fire, which records it as ``missed``.
    """
    window = list(
        islice(
            fire_times(schedule.cron, schedule.timezone, schedule.watermark, now),
            CATCH_UP_BATCH + 1,
        )
    )
    if not window:
        return
    capped = len(window) > CATCH_UP_BATCH
    window = window[:CATCH_UP_BATCH]
    done = set(
        db.session.scalars(
            select(ScheduleFire.fire_at).where(
                ScheduleFire.schedule_id == schedule.id,
                ScheduleFire.fire_at >= window[0],
                ScheduleFire.fire_at <= window[-1],
            )
        )
    )
    db.session.commit()
    waiting = {f for f in window if f not in done and pending(f)}
    missed = [f for f in window if f not in done and f not in waiting]
    if capped and schedule.missed != "all":
        # A long outage: jump to the latest fire instead of walking every one.
        latest = previous_fire(schedule.cron, schedule.timezone, now)
        if latest is not None and latest > window[-1]:
            missed.append(latest)
            window.append(latest)
    if not missed:
        _advance(schedule, window, waiting)
        return
    earlier = len(missed) - 1
    since = f" since {missed[0]:%Y-%m-%d %H:%M} UTC" if earlier else ""
    more = "more than " if capped and schedule.missed != "all" else ""
    started: set[datetime] = set()
    if schedule.missed == "all":
        for fire_at in missed:
            start(fire_at, "Started late: missed while no scheduler was running (policy: all).")
            started.add(fire_at)
    elif schedule.missed == "latest":
        note = "Started late: missed while no scheduler was running"
        if earlier:
            note += f"; {more}{earlier} earlier missed fire(s){since} were not started"
        start(missed[-1], note + " (policy: latest).")
        started.add(missed[-1])
    else:
        count = f"{more}{len(missed)} missed fire(s){since}" if earlier else "missed"
        _record_skipped(
            schedule.id,
            missed[-1],
            f"Not started: {count} while no scheduler was running (policy: skip).",
        )
    _advance(schedule, window, waiting | started)


def _record_skipped(schedule_id: int, fire_at: datetime, note: str) -> None:
    write_transaction()
    db.session.add(
        ScheduleFire(schedule_id=schedule_id, fire_at=fire_at, status="skipped", note=note)
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()


def _advance(schedule: Active, window: list[datetime], unsettled: set[datetime]) -> None:
    """Move the watermark to the last fire time before the first unsettled one."""
    mark = None
    for fire_at in window:
        if fire_at in unsettled:
            mark = fire_at - timedelta(seconds=1)
            break
        mark = fire_at
    if mark is None or mark <= schedule.watermark:
        return
    write_transaction()
    db.session.execute(
        update(Schedule)
        .where(
            Schedule.id == schedule.id,
            or_(Schedule.last_fire_at.is_(None), Schedule.last_fire_at < mark),
        )
        .values(last_fire_at=mark)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


# -------------------------------------------------------------------- the domain: firing


def fire(
    schedule_id: int,
    fire_at: datetime,
    evaluate: Callable[[Schedule, datetime], Any],
    *,
    status: str = "started",
    note: str | None = None,
) -> ScheduleFire | None:
    """Start the run of one fire time: at most once, however often this is called.

    ``evaluate(schedule, now)`` computes the input (a worker evaluates an input snippet;
    never the web process). The fire row and the run are inserted in one transaction; the
    fire row's unique key makes a second attempt (another scheduler, a retried job) roll
    back and return the first. A failing snippet or an input the schema refuses is recorded
    as a ``failed`` fire with its error. Returns None when the schedule no longer fires then
    (deleted, paused, edited, or its workflow has no published version).
    """
    from ..queueing import enqueue_run
    from ..runs import new_run

    schedule = db.session.get(Schedule, schedule_id)
    if schedule is None or not schedule.enabled:
        db.session.commit()
        return None
    version = schedule.workflow.latest_version
    if version is None or not is_fire_time(schedule.cron, schedule.timezone, fire_at):
        db.session.commit()
        return None
    existing = _fire_row(schedule_id, fire_at)
    if existing is not None:
        return existing
    if schedule.overlap == "skip":
        unfinished = _unfinished_run(schedule_id)
        if unfinished is not None:
            _record_skipped(
                schedule_id,
                fire_at,
                f"Not started: the previous run {unfinished[0]} was still {unfinished[1]}"
                " (overlap: skip).",
            )
            return _fire_row(schedule_id, fire_at)
    run: Run | None = None
    error = None
    try:
        value = evaluate(schedule, fire_at.astimezone(ZoneInfo(schedule.timezone)))
        run = new_run(version, value, trigger=f"schedule:{schedule.name}")
    except ValidationFailed as exc:
        error = exc.message + "".join(f"\n{d['path']}: {d['message']}" for d in exc.details)
    except Exception as exc:
        error = getattr(exc, "schedule_traceback", None) or f"{type(exc).__name__}: {exc}"
    row = ScheduleFire(
        schedule_id=schedule_id,
        fire_at=fire_at,
        status="failed" if run is None else status,
        run_id=run.id if run is not None else None,
        error=error,
        note=note,
    )
    write_transaction()
    if run is not None:
        db.session.add(run)
        db.session.flush()
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return _fire_row(schedule_id, fire_at)
    if run is not None:
        enqueue_run(run.id)
    return row


def _unfinished_run(schedule_id: int) -> tuple[str, str] | None:
    """The schedule's latest run, (id, status), while it is not finished."""
    row = db.session.execute(
        select(Run.id, Run.status)
        .join(ScheduleFire, ScheduleFire.run_id == Run.id)
        .where(ScheduleFire.schedule_id == schedule_id)
        .order_by(ScheduleFire.fire_at.desc())
        .limit(1)
    ).first()
    return (row.id, row.status) if row is not None and row.status in ACTIVE else None


def _fire_row(schedule_id: int, fire_at: datetime) -> ScheduleFire | None:
    row = db.session.scalar(
        select(ScheduleFire).where(
            ScheduleFire.schedule_id == schedule_id, ScheduleFire.fire_at == fire_at
        )
    )
    db.session.commit()
    return row


def recent_fires(schedule_id: int, limit: int = 10) -> list[ScheduleFire]:
    return list(
        db.session.scalars(
            select(ScheduleFire)
            .where(ScheduleFire.schedule_id == schedule_id)
            .order_by(ScheduleFire.fire_at.desc())
            .limit(limit)
        )
    )


def problem_fires(schedule_id: int, limit: int = 5) -> list[ScheduleFire]:
    """The latest missed, skipped and failed fires (what a user should look at)."""
    return list(
        db.session.scalars(
            select(ScheduleFire)
            .where(
                ScheduleFire.schedule_id == schedule_id,
                ScheduleFire.status.in_(("missed", "skipped", "failed")),
            )
            .order_by(ScheduleFire.fire_at.desc())
            .limit(limit)
        )
    )
