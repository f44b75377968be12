"""Bulk actions too large for one request: recorded, applied by a worker, shown with progress.

The Tasks page applies a bulk pause, resume or cancel over at most ``BULK_INLINE_MAX`` runs in
the request itself. A larger one ("hold every sync run" over thousands) is a ``BulkAction``
row put on the run queue: a worker applies ``runs.bulk_act`` (each run through its own
conditional transition) and records the counts after every batch, and the page polls the row.
Its status moves queued → running → completed | failed, each change one conditional UPDATE,
so a job delivered twice applies the action once.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import redis
from sqlalchemy import select, update

from . import runs as domain
from .errors import NotFound
from .extensions import db, write_transaction
from .models import BulkAction
from .queueing import enqueue_bulk
from .timeutil import utcnow

FINISHED = ("completed", "failed")
STALLED_AFTER = timedelta(minutes=2)  # no progress recorded for this long: say so


def start(action: str, run_filter: domain.RunFilter, total: int, user: str | None) -> BulkAction:
    """Record the action and put it on the run queue. ``total`` is the count the person
    confirmed (runs started later are not touched; runs that moved on are skipped)."""
    job = BulkAction(
        action=action,
        filter=dataclasses.asdict(run_filter),
        total=total,
        status="queued",
        created_by=user,
    )
    write_transaction()
    db.session.add(job)
    db.session.commit()
    try:
        enqueue_bulk(job.id)
    except redis.RedisError as exc:
        _finish(job.id, "failed", error=f"Could not reach the queue: {exc}", claimed=False)
        db.session.refresh(job)
    return job


def get(bulk_id: str) -> BulkAction:
    job = db.session.get(BulkAction, bulk_id)
    if job is None:
        raise NotFound(f"No bulk action {bulk_id!r}")
    return job


def unfinished() -> list[BulkAction]:
    """Bulk actions still queued or running (shown on the Tasks page to every operator)."""
    return list(
        db.session.scalars(
            select(BulkAction)
            .where(BulkAction.status.in_(("queued", "running")))
            .order_by(BulkAction.created_at.desc())
            .limit(5)
        )
    )


def stalled(job: BulkAction) -> bool:
    """Unfinished with no progress recorded for a while: no worker took it, or its worker
    stopped. Running it again is safe (each transition is conditional)."""
    return job.status not in FINISHED and utcnow() - job.updated_at > STALLED_AFTER


def _transition(bulk_id: str, from_status: str, **values: Any) -> bool:
    write_transaction()
    changed = db.session.execute(
        update(BulkAction)
        .where(BulkAction.id == bulk_id, BulkAction.status == from_status)
        .values(updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    return bool(changed)


def _finish(bulk_id: str, status: str, *, claimed: bool = True, **values: Any) -> bool:
    return _transition(
        bulk_id, "running" if claimed else "queued", status=status, finished_at=utcnow(), **values
    )


def execute(bulk_id: str) -> str | None:
    """Apply a queued bulk action (the worker's side). Returns its final status, or None when
    it was not queued (another delivery of the job has it)."""
    job = db.session.get(BulkAction, bulk_id)
    if job is None or not _transition(bulk_id, "queued", status="running"):
        db.session.commit()
        return None
    action = job.action
    fields = dict(job.filter or {})
    fields["statuses"] = tuple(fields.get("statuses") or ())
    run_filter = domain.RunFilter(**fields)

    def progress(changed: int, skipped: int) -> None:
        _transition(bulk_id, "running", changed=changed, skipped=skipped)

    try:
        result = domain.bulk_act(action, run_filter, progress)
    except Exception as exc:  # recorded for the page; the runs changed so far stay changed
        db.session.rollback()
        _finish(bulk_id, "failed", error=f"{type(exc).__name__}: {exc}")
        return "failed"
    _finish(bulk_id, "completed", changed=result.changed, skipped=result.skipped)
    return "completed"
