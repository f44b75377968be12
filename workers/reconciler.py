"""The reconciler: makes Redis agree with the database, which is the truth.

Every tick it enqueues sleeping runs whose timer is due and resumes suspended runs whose wait
timed out. Every few seconds it also finds runs
that should be on the queue and are not: pending runs whose job was lost (a Redis restart or
FLUSHALL), and running runs whose worker died (their lease expired). A run that waits for a
concurrency slot is left alone until it may start.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import and_, or_, select

from console.extensions import db
from console.metrics.collector import REQUEUES_KEY
from console.models import Run, StepRun, Waitpoint, Workflow
from console.queueing import enqueue_run, get_redis
from console.runs import may_start, settle_waits
from console.timeutil import utcnow

log = logging.getLogger(__name__)
BATCH = 500
WAITING = {JobStatus.QUEUED.value, JobStatus.SCHEDULED.value, JobStatus.DEFERRED.value}


def wake_due_timers() -> int:
    """Enqueue sleeping runs whose wake-up time has come (once per wake-up)."""
    now = utcnow()
    due = db.session.scalars(
        select(Run.id)
        .where(
            Run.status == "sleeping",
            Run.wake_at <= now,
            or_(Run.enqueued_at.is_(None), Run.enqueued_at < Run.wake_at),
        )
        .order_by(Run.wake_at)
        .limit(BATCH)
    ).all()
    db.session.commit()
    for run_id in due:
        enqueue_run(run_id)
    return len(due)


def time_out_suspensions() -> int:
    """Suspended runs whose wait is over resume by themselves (``timed_out``), and a link
    decision that was recorded but not applied (its web process died in between) is applied."""
    decided = (
        select(Waitpoint.run_id)
        .join(
            StepRun,
            and_(
                StepRun.run_id == Waitpoint.run_id,
                StepRun.name == Waitpoint.step_name,
                StepRun.runs == Waitpoint.runs,
            ),
        )
        .where(
            Waitpoint.kind == "suspend",
            Waitpoint.state.in_(("resumed", "timed_out")),
            StepRun.status == "suspended",
        )
    )
    due = db.session.scalars(
        select(Run.id)
        .where(Run.status == "suspended", or_(Run.wake_at <= utcnow(), Run.id.in_(decided)))
        .order_by(Run.wake_at)
        .limit(BATCH)
    ).all()
    db.session.commit()
    for run_id in due:
        settle_waits(run_id)
    return len(due)


def job_state(job_id: str | None) -> str | None:
    if not job_id:
        return None
    try:
        status = Job.fetch(job_id, connection=get_redis()).get_status(refresh=False)
    except NoSuchJobError:
        return None
    # JobStatus is a str enum; str() of one is "JobStatus.QUEUED", its value is "queued".
    return getattr(status, "value", status)


def _startable(workflow_ids: set[int]) -> dict[int, set[str]]:
    """For each of these workflows with a concurrency limit, the runs that may start now."""
    if not workflow_ids:
        return {}
    limits = db.session.execute(
        select(Workflow.id, Workflow.concurrency).where(
            Workflow.id.in_(workflow_ids), Workflow.concurrency.is_not(None)
        )
    ).all()
    return {row.id: set(may_start(row.id, row.concurrency)) for row in limits}


def requeue_lost_runs() -> int:
    """Enqueue runs that are due but whose job is not waiting in Redis."""
    now = utcnow()
    grace = timedelta(seconds=2 * float(current_app.config["RECONCILE_INTERVAL"]))
    lease = timedelta(seconds=float(current_app.config["RUN_LEASE_SECONDS"]))
    settled = or_(Run.enqueued_at.is_(None), Run.enqueued_at < now - grace)
    rows = db.session.execute(
        select(Run.id, Run.status, Run.job_id, Run.enqueued_at, Run.workflow_id)
        .where(
            or_(
                and_(
                    Run.status == "pending",
                    settled,
                    or_(Run.lease_owner.is_(None), Run.lease_expires_at < now),
                ),
                and_(Run.status == "running", Run.lease_expires_at < now, settled),
                and_(Run.status == "sleeping", Run.wake_at <= now - grace, settled),
            )
        )
        .limit(BATCH)
    ).all()
    startable = _startable({row.workflow_id for row in rows})
    db.session.commit()
    count = 0
    for row in rows:
        allowed = startable.get(row.workflow_id)
        if allowed is not None and row.id not in allowed:
            continue  # waits for a concurrency slot; a freed slot enqueues it
        state = job_state(row.job_id)
        if state in WAITING:
            continue
        # A job a worker has started on a pending run is only trusted for a lease's length.
        if (
            state == JobStatus.STARTED
            and row.status == "pending"
            and row.enqueued_at
            and row.enqueued_at > now - lease
        ):
            continue
        log.info(
            "re-enqueueing %s run %s (job %s: %s)",
            row.status,
            row.id,
            row.job_id,
            state or "missing",
        )
        enqueue_run(row.id)
        count += 1
    if count:
        get_redis().incrby(REQUEUES_KEY, count)  # for GET /metrics
    return count
