"""Concurrency slots (docs/operations.md): a workflow's ``concurrency`` caps how many of its runs
execute at once.

A run holds a slot while it is ``running`` (or ``pending`` but still held by its worker,
resumed mid-step) under a live lease; suspended, sleeping and paused runs hold none, and a
dead worker's slot frees when its lease expires. The count is read and the slot taken in the
claim's transaction (``checkpoints.take_run``): on PostgreSQL the workflow's row is locked
first, so that two workers cannot both take the last slot; SQLite's ``BEGIN IMMEDIATE``
already serialises writers. Runs due to start wait, ``pending``, and start in the order they
were created: a claim is granted only to the first runs due, as many as there are free slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select

from ..extensions import db
from ..models import Run, Workflow
from ..queueing import enqueue_run
from ..timeutil import utcnow


def _holding(now: datetime) -> Any:
    return and_(
        Run.status.in_(("running", "pending")),
        Run.lease_owner.is_not(None),
        Run.lease_expires_at >= now,
    )


def _due(now: datetime) -> Any:
    """What ``checkpoints._CLAIM`` would take."""
    return or_(
        and_(
            Run.status == "pending",
            or_(Run.lease_owner.is_(None), Run.lease_expires_at < now),
        ),
        and_(Run.status == "running", Run.lease_expires_at < now),
        and_(Run.status == "sleeping", Run.wake_at <= now),
    )


@dataclass(frozen=True)
class Slots:
    limit: int
    running: int  # runs holding a slot

    @property
    def free(self) -> int:
        return max(0, self.limit - self.running)


def workflow_limit(conn: Any, run_id: str) -> tuple[int, int] | None:
    """(workflow id, concurrency) of the run's workflow, or None when it has no limit."""
    row = conn.execute(
        select(Workflow.id, Workflow.concurrency)
        .join(Run, Run.workflow_id == Workflow.id)
        .where(Run.id == run_id)
    ).first()
    if row is None or row.concurrency is None:
        return None
    return int(row.id), int(row.concurrency)


def slots(conn: Any, workflow_id: int, limit: int, now: datetime, but: str | None = None) -> Slots:
    where = [Run.workflow_id == workflow_id, _holding(now)]
    if but is not None:
        where.append(Run.id != but)
    running = conn.execute(select(func.count()).select_from(Run).where(*where)).scalar_one()
    return Slots(limit, int(running))


def slot_free(conn: Any, run_id: str, now: datetime, *, due: bool = True) -> bool:
    """Inside the claim's write transaction: whether ``run_id`` may execute now. ``due``: the
    run waits with the others (a claim), so the runs due before it go first."""
    found = workflow_limit(conn, run_id)
    if found is None:
        return True
    workflow_id, limit = found
    if conn.dialect.name == "postgresql":
        # Serialises the claims of this workflow's runs; the counts below are read after it.
        conn.execute(select(Workflow.id).where(Workflow.id == workflow_id).with_for_update())
    free = slots(conn, workflow_id, limit, now, but=run_id).free
    if not due or free == 0:
        return free > 0
    ahead = conn.execute(
        select(func.count())
        .select_from(Run)
        .where(Run.workflow_id == workflow_id, Run.id < run_id, _due(now))
    ).scalar_one()
    return int(ahead) < free


def may_start(workflow_id: int, limit: int) -> list[str]:
    """The runs that would be granted a slot now, oldest first."""
    now = utcnow()
    conn = db.session.connection()
    free = slots(conn, workflow_id, limit, now).free
    if not free:
        return []
    return list(
        db.session.scalars(
            select(Run.id)
            .where(Run.workflow_id == workflow_id, _due(now))
            .order_by(Run.id)
            .limit(free)
        )
    )


def start_waiting(run_id: str) -> list[str]:
    """A run of a limited workflow let go of its slot (it ended, waits, was paused or
    canceled): enqueue the runs that may start now. Returns their ids."""
    found = workflow_limit(db.session.connection(), run_id)
    if found is None:
        db.session.commit()
        return []
    ids = may_start(*found)
    db.session.commit()
    for waiting in ids:
        enqueue_run(waiting)
    return ids


def waiting_runs(run_ids: list[str]) -> dict[str, Slots]:
    """Of these runs, those pending for a concurrency slot, with their workflow's slots: all
    are taken, or taken by runs due before them."""
    if not run_ids:
        return {}
    now = utcnow()
    rows = db.session.execute(
        select(Run.id, Run.workflow_id, Workflow.concurrency)
        .join(Workflow, Workflow.id == Run.workflow_id)
        .where(
            Run.id.in_(run_ids),
            Run.status == "pending",
            Workflow.concurrency.is_not(None),
            or_(Run.lease_owner.is_(None), Run.lease_expires_at < now),
        )
    ).all()
    found: dict[str, Slots] = {}
    seen: dict[int, tuple[Slots, set[str]]] = {}
    for row in rows:
        if row.workflow_id not in seen:
            taken = slots(db.session.connection(), row.workflow_id, row.concurrency, now)
            starting = set(may_start(row.workflow_id, row.concurrency)) if taken.free else set()
            seen[row.workflow_id] = (taken, starting)
        taken, starting = seen[row.workflow_id]
        if row.id not in starting:
            found[row.id] = taken
    return found


def waiting_for(run: Run) -> str | None:
    """``"concurrency"`` when the run is pending for a slot (the API's ``waiting_for``)."""
    if run.status != "pending" or run.workflow.concurrency is None:
        return None
    return "concurrency" if run.id in waiting_runs([run.id]) else None
