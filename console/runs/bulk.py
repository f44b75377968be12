"""Actions on many runs at once: ``bulk_act`` over a ``RunFilter``, and the bulk actions too
large for one request: recorded, applied by a worker, shown with progress.

The Tasks page applies a bulk pause, resume or cancel over at most ``BULK_INLINE_MAX`` runs in
the request itself. A larger one ("hold every sync run" over thousands) is a ``BulkAction``
row put on the run queue: a worker applies ``bulk_act`` (each run through its own
conditional transition) and records the counts after every batch, and the page polls the row.
Its status moves queued → running → completed | failed, each change one conditional UPDATE,
so a job delivered twice applies the action once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import func, select, update

from ..errors import Conflict, NotFound
from ..extensions import changed_rows, db, write_transaction
from ..models import ACTIVE, BulkAction, Run
from ..queueing import enqueue_bulk
from ..timeutil import utcnow
from .actions import PAUSABLE, run_action

BULK_FROM = {"pause": PAUSABLE, "resume": ("paused",), "cancel": tuple(sorted(ACTIVE))}
BULK_BATCH = 200


def id_bound(moment: datetime, fill: str) -> str:
    """The smallest (``fill="0"``) or largest (``"z"``) run id created at ``moment``'s
    millisecond: ids are time-ordered (``console.ids``), so a time range is an id range."""
    from ..ids import time_part

    return time_part(int(moment.timestamp() * 1000)) + fill * 16


@dataclass(frozen=True)
class RunFilter:
    """Which runs a list, a count or a bulk action covers. Every part is served by an index:
    ``status`` and ``workflow_id`` by ``(workflow_id, status, id)``/``(status, id)``, and the
    id range (a time range or an id prefix) by the primary key."""

    statuses: tuple[str, ...] = ()
    workflow_id: int | None = None
    id_min: str | None = None
    id_max: str | None = None

    def conditions(self, *, statuses: bool = True) -> list[Any]:
        where: list[Any] = []
        if statuses and self.statuses:
            where.append(Run.status.in_(self.statuses))
        if self.workflow_id is not None:
            where.append(Run.workflow_id == self.workflow_id)
        if self.id_min is not None:
            where.append(Run.id >= self.id_min)
        if self.id_max is not None:
            where.append(Run.id <= self.id_max)
        return where


@dataclass
class BulkResult:
    action: str
    changed: int
    skipped: int


def bulk_act(
    action: str,
    run_filter: RunFilter,
    progress: Callable[[int, int], None] | None = None,
) -> BulkResult:
    """Pause, resume or cancel every run matching the filter whose status allows it, each
    through its own conditional transition (so a run that moved meanwhile is skipped, never
    forced), newest first in batches. Runs created after the call began are not touched.
    ``progress(changed, skipped)`` is called after each batch."""
    single = run_action(action)
    allowed = BULK_FROM[action]
    statuses = [s for s in allowed if not run_filter.statuses or s in run_filter.statuses]
    changed = skipped = 0
    if not statuses:
        return BulkResult(action, 0, 0)
    top = db.session.scalar(select(func.max(Run.id)))
    last: str | None = None
    while top is not None:
        query = select(Run.id, Run.status).where(
            *run_filter.conditions(statuses=False), Run.status.in_(statuses), Run.id <= top
        )
        if last is not None:
            query = query.where(Run.id < last)
        batch = db.session.execute(query.order_by(Run.id.desc()).limit(BULK_BATCH)).all()
        db.session.commit()
        for run_id, before in batch:
            try:
                after = single(run_id).status
            except Conflict:
                after = before
            moved = after != before and (after == "paused") == (action == "pause")
            changed, skipped = changed + moved, skipped + (not moved)
        if progress is not None:
            progress(changed, skipped)
        if len(batch) < BULK_BATCH:
            break
        last = batch[-1][0]
    return BulkResult(action, changed, skipped)


FINISHED = ("completed", "failed")
STALLED_AFTER = timedelta(minutes=2)  # no progress recorded for this long: say so


def start(action: str, run_filter: RunFilter, total: int, user: str | None) -> BulkAction:
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
    changed = changed_rows(
        db.session.execute(
            update(BulkAction)
            .where(BulkAction.id == bulk_id, BulkAction.status == from_status)
            .values(updated_at=utcnow(), **values)
            .execution_options(synchronize_session=False)
        )
    )
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
    run_filter = RunFilter(**fields)

    def progress(changed: int, skipped: int) -> None:
        _transition(bulk_id, "running", changed=changed, skipped=skipped)

    try:
        result = bulk_act(action, run_filter, progress)
    except Exception as exc:  # recorded for the page; the runs changed so far stay changed
        db.session.rollback()
        _finish(bulk_id, "failed", error=f"{type(exc).__name__}: {exc}")
        return "failed"
    _finish(bulk_id, "completed", changed=result.changed, skipped=result.skipped)
    return "completed"
