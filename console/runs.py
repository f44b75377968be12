"""The run state machine (SPEC §3): the only place a run's or a step's status changes.

Every transition is one conditional UPDATE (``... WHERE status IN (allowed)``), so concurrent
actions resolve to one winner. Worker-side transitions are additionally fenced by the lease
owner: a worker that lost its lease (it was presumed dead and another took over) can record
nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from jsonschema import Draft202012Validator
from sqlalchemy import and_, case, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .errors import Conflict, NotFound, ValidationFailed
from .extensions import db, write_transaction
from .models import ACTIVE, TERMINAL, LogLine, Run, StepRun, TaskResult, Workflow, WorkflowVersion
from .queueing import enqueue_run
from .timeutil import utcnow

IDEMPOTENCY_WINDOW = timedelta(hours=24)
PAUSABLE = ("pending", "running", "sleeping", "suspended")


def _lease_seconds() -> float:
    return float(current_app.config["RUN_LEASE_SECONDS"])


# --------------------------------------------------------------------------- starting runs


def input_problems(schema: dict | None, value: Any) -> list[dict[str, str]]:
    if not isinstance(value, dict):
        return [{"path": "/", "message": "the input must be a JSON object"}]
    if not schema:
        return []
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        path = "/" + "/".join(str(p) for p in error.absolute_path)
        problems.append({"path": path, "message": error.message})
    return problems


def get_workflow(name: str) -> Workflow:
    workflow = db.session.scalar(select(Workflow).filter_by(name=name))
    if workflow is None:
        raise NotFound(f"No workflow named {name!r}")
    return workflow


def get_version(workflow: Workflow, label: str | None) -> WorkflowVersion:
    if label is None:
        version = workflow.latest_version
        if version is None:
            raise Conflict(f"Workflow {workflow.name!r} has no published version")
        return version
    for version in workflow.live_versions:
        if version.label == label:
            return version
    raise NotFound(f"Workflow {workflow.name!r} has no version {label!r}")


def get_run(run_id: str) -> Run:
    run = db.session.get(Run, run_id)
    if run is None:
        raise NotFound(f"No run with id {run_id!r}")
    return run


def start_run(
    workflow: Workflow,
    input: Any = None,
    *,
    version: str | None = None,
    trigger: str = "manual",
    idempotency_key: str | None = None,
    user: str | None = None,
) -> tuple[Run, bool]:
    """Validate the input, record a pending run and enqueue it.

    Returns ``(run, created)``; with an ``idempotency_key`` seen in the last 24 hours the
    first run is returned and nothing is started.
    """
    input = {} if input is None else input
    pinned = get_version(workflow, version)
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 255:
            raise ValidationFailed("idempotency_key must be a string of 1 to 255 characters")
        existing = _idempotent_run(workflow.id, idempotency_key)
        if existing is not None:
            return existing, False
    problems = input_problems(pinned.definition.get("input_schema"), input)
    if problems:
        raise ValidationFailed("The input does not match the workflow's input schema", problems)
    _check_payload_size(input, "input")
    run = Run(
        workflow_id=workflow.id, version_id=pinned.id, status="pending", trigger=trigger,
        input=input, idempotency_key=idempotency_key, created_by=user,
        step_count=len(pinned.steps),
    )
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = _idempotent_run(workflow.id, idempotency_key)
        if existing is None:
            raise
        return existing, False
    enqueue_run(run.id)
    return run, True


def _idempotent_run(workflow_id: int, key: str | None) -> Run | None:
    run = db.session.scalar(select(Run).filter_by(workflow_id=workflow_id, idempotency_key=key))
    if run is None:
        return None
    if run.created_at >= utcnow() - IDEMPOTENCY_WINDOW:
        return run
    # The key is free again after the window: release it from the old run.
    db.session.execute(update(Run).where(Run.id == run.id).values(idempotency_key=None))
    db.session.commit()
    return None


def _check_payload_size(value: Any, what: str) -> None:
    limit = current_app.config["MAX_PAYLOAD_BYTES"]
    size = len(json.dumps(value))
    if size > limit:
        raise ValidationFailed(f"The {what} is {size} bytes; the limit is {limit}", status=413)


# ------------------------------------------------------------------------ operator actions


def _act(run_id: str, stmt: Any) -> tuple[Run, bool]:
    write_transaction()
    changed = db.session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
    db.session.commit()
    run = get_run(run_id)
    db.session.refresh(run)
    return run, changed


def _refuse_terminal(run: Run, action: str) -> None:
    if run.status in TERMINAL:
        raise Conflict(f"Run {run.id} is {run.status}; a {run.status} run cannot {action}")


def pause_run(run_id: str) -> Run:
    """pending, running, sleeping or suspended → paused. A running step finishes first."""
    now = utcnow()
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.status.in_(PAUSABLE))
        .values(status="paused", paused_from=Run.status, updated_at=now)
    )
    run, changed = _act(run_id, stmt)
    if not changed:
        _refuse_terminal(run, "be paused")
    return run


def resume_run(run_id: str) -> Run:
    """paused → where the run would be now: still sleeping if its timer is open, else pending."""
    now = utcnow()
    target = case(
        (and_(Run.paused_from == "sleeping", Run.wake_at > now), "sleeping"),
        else_="pending",
    )
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.status == "paused")
        .values(status=target, paused_from=None, updated_at=now)
    )
    run, changed = _act(run_id, stmt)
    if not changed:
        _refuse_terminal(run, "be resumed")
        return run
    if run.status == "pending":
        enqueue_run(run.id)
    return run


def cancel_run(run_id: str) -> Run:
    """Any non-terminal status → canceled. Nothing is enqueued or recorded afterwards."""
    now = utcnow()
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.status.in_(ACTIVE))
        .values(status="canceled", finished_at=now, updated_at=now, wake_at=None,
                paused_from=None, error="Canceled")
    )
    write_transaction()
    changed = db.session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
    if changed:
        db.session.execute(
            update(StepRun)
            .where(StepRun.run_id == run_id,
                   StepRun.status.in_(("pending", "running", "sleeping", "suspended")))
            .values(status="canceled", finished_at=now)
        )
    db.session.commit()
    run = get_run(run_id)
    db.session.refresh(run)
    if not changed:
        _refuse_terminal(run, "be canceled")
    return run


# --------------------------------------------------------------------- the worker's side


@dataclass
class Claim:
    """A worker's hold on a run; ``owner`` fences every write it makes."""

    run_id: str
    owner: str


def claim_run(run_id: str, owner: str) -> bool:
    """Take a run that is due: pending, sleeping past its timer, or running on a dead lease."""
    now = utcnow()
    lease_free = or_(Run.lease_owner.is_(None), Run.lease_expires_at < now)
    stmt = (
        update(Run)
        .where(
            Run.id == run_id,
            or_(
                and_(Run.status == "pending", lease_free),
                and_(Run.status == "running", Run.lease_expires_at < now),
                and_(Run.status == "sleeping", Run.wake_at <= now),
            ),
        )
        .values(
            status="running", lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=_lease_seconds()),
            wake_at=None, updated_at=now,
            started_at=case((Run.started_at.is_(None), now), else_=Run.started_at),
        )
    )
    write_transaction()
    claimed = db.session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
    db.session.commit()
    return claimed


def renew_lease(conn: Any, run_id: str, owner: str, seconds: float) -> bool:
    """Extend the lease; used by the worker's heartbeat thread on its own connection."""
    result = conn.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner)
        .values(lease_expires_at=utcnow() + timedelta(seconds=seconds))
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _fence(claim: Claim, **values: Any) -> str | None:
    """Inside a write transaction: touch the run if the claim still holds; return its status."""
    now = utcnow()
    values.setdefault("lease_expires_at", now + timedelta(seconds=_lease_seconds()))
    values["updated_at"] = now
    stmt = (
        update(Run)
        .where(Run.id == claim.run_id, Run.lease_owner == claim.owner,
               Run.status.not_in(tuple(TERMINAL)))
        .values(**values)
        .returning(Run.status)
    )
    return db.session.execute(stmt).scalar()


def _insert_logs(claim: Claim, logs: list[dict[str, Any]]) -> None:
    if logs:
        db.session.execute(insert(LogLine), [dict(line, run_id=claim.run_id) for line in logs])


def record_task(claim: Claim, step: str, key: str, result: Any,
                logs: list[dict[str, Any]]) -> bool:
    """Record one ``ctx.task`` result. False if the claim was lost or the key is taken."""
    write_transaction()
    if _fence(claim) is None:
        db.session.rollback()
        return False
    _insert_logs(claim, logs)
    db.session.add(TaskResult(run_id=claim.run_id, step_name=step, key=key, result=result))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


@dataclass
class StepOutcome:
    name: str
    position: int
    status: str
    started_at: datetime
    finished_at: datetime
    attempts: int
    output: Any = None
    error: str | None = None
    exists: bool = False


def _write_step(claim: Claim, outcome: StepOutcome) -> None:
    values = {
        "status": outcome.status, "output": outcome.output, "error": outcome.error,
        "attempts": outcome.attempts, "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        "duration_ms": int((outcome.finished_at - outcome.started_at).total_seconds() * 1000),
    }
    if outcome.exists:
        db.session.execute(
            update(StepRun)
            .where(StepRun.run_id == claim.run_id, StepRun.name == outcome.name,
                   StepRun.status != "completed")
            .values(**values)
        )
    else:
        db.session.execute(
            insert(StepRun),
            [dict(values, run_id=claim.run_id, name=outcome.name, position=outcome.position)],
        )


def record_step_completed(claim: Claim, outcome: StepOutcome, next_step: int,
                          logs: list[dict[str, Any]]) -> str | None:
    """Commit a step's checkpoint and move the run to the next step, in one transaction.

    Returns the run's status afterwards (``running``, or ``paused``/``pending`` when an
    operator acted meanwhile), or None when the claim was lost and nothing was recorded.
    """
    compute = int((outcome.finished_at - outcome.started_at).total_seconds() * 1000)
    write_transaction()
    status = _fence(claim, current_step=next_step, compute_ms=Run.compute_ms + compute)
    if status is None:
        db.session.rollback()
        return None
    _insert_logs(claim, logs)
    try:
        _write_step(claim, outcome)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return None
    return status


def record_step_failed(claim: Claim, outcome: StepOutcome, retry_at: datetime | None,
                       logs: list[dict[str, Any]]) -> str | None:
    """Record a failed attempt: the run sleeps until ``retry_at``, or fails when it is None."""
    compute = int((outcome.finished_at - outcome.started_at).total_seconds() * 1000)
    write_transaction()
    if retry_at is not None:
        status = _fence(
            claim,
            status=case((Run.status == "paused", "paused"), else_="sleeping"),
            paused_from=case((Run.status == "paused", "sleeping"), else_=Run.paused_from),
            wake_at=retry_at, lease_owner=None, lease_expires_at=None,
            compute_ms=Run.compute_ms + compute,
        )
        outcome.status = "sleeping"
    else:
        status = _fence(
            claim, status="failed", error=outcome.error, finished_at=outcome.finished_at,
            lease_owner=None, lease_expires_at=None, paused_from=None,
            compute_ms=Run.compute_ms + compute,
        )
        outcome.status = "failed"
    if status is None:
        db.session.rollback()
        return None
    _insert_logs(claim, logs)
    _write_step(claim, outcome)
    db.session.commit()
    return "failed" if retry_at is None else status


def continue_after_boundary(claim: Claim, status: str) -> bool:
    """At a step boundary: keep going, or let go of a run an operator paused.

    A run that was paused and resumed while its step ran is ``pending`` and still ours.
    """
    if status == "running":
        return True
    write_transaction()
    if status == "pending":
        taken = db.session.execute(
            update(Run)
            .where(Run.id == claim.run_id, Run.lease_owner == claim.owner,
                   Run.status == "pending")
            .values(status="running")
        ).rowcount == 1  # type: ignore[attr-defined]
        db.session.commit()
        if taken:
            return True
    else:
        db.session.rollback()
    release_run(claim)
    return False


def release_run(claim: Claim) -> str | None:
    """Give up the lease (paused, canceled or lost). Returns the status if it is ``pending``
    again (resumed meanwhile), so that the worker can claim it once more."""
    write_transaction()
    db.session.execute(
        update(Run).where(Run.id == claim.run_id, Run.lease_owner == claim.owner)
        .values(lease_owner=None, lease_expires_at=None)
    )
    db.session.commit()
    return db.session.scalar(select(Run.status).where(Run.id == claim.run_id))


def finish_run(claim: Claim, status: str, *, output: Any = None, error: str | None = None,
               skipped: list[tuple[int, str]] = ()) -> bool:  # type: ignore[assignment]
    """End the run as ``completed`` or ``failed``; remaining steps are marked skipped."""
    now = utcnow()
    write_transaction()
    changed = _fence(
        claim, status=status, output=output, error=error, finished_at=now,
        lease_owner=None, lease_expires_at=None, paused_from=None,
    )
    if changed is None:
        db.session.rollback()
        return False
    if skipped:
        db.session.execute(
            insert(StepRun),
            [{"run_id": claim.run_id, "name": name, "position": position, "status": "skipped"}
             for position, name in skipped],
        )
    db.session.commit()
    return True


def delete_version(version: WorkflowVersion) -> None:
    write_transaction()
    active = db.session.scalar(
        select(Run.id).where(Run.version_id == version.id, Run.status.in_(tuple(ACTIVE)))
        .limit(1)
    )
    if active is not None:
        db.session.rollback()
        raise Conflict(f"Version {version.label!r} is used by active runs (e.g. {active}); "
                       "cancel or finish them first")
    version.deleted_at = utcnow()
    db.session.commit()


def purge_run(run_id: str) -> None:
    """Delete a run and everything recorded for it (tests and maintenance)."""
    for model in (LogLine, TaskResult, StepRun):
        db.session.execute(delete(model).where(model.run_id == run_id))
    db.session.execute(delete(Run).where(Run.id == run_id))
    db.session.commit()
