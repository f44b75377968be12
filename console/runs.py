"""The run state machine (SPEC §3): the only place a run's or a step's status changes.

Every transition is one conditional UPDATE (``... WHERE status IN (allowed)``), so concurrent
actions resolve to one winner. Worker-side transitions are additionally fenced by the lease
owner: a worker that lost its lease (it was presumed dead and another took over) can record
nothing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from jsonschema import Draft202012Validator
from sqlalchemy import (
    Boolean,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from .errors import Conflict, ConsoleError, NotFound, ValidationFailed
from .extensions import db, write_transaction
from .ids import new_id
from .models import (
    ACTIVE,
    TERMINAL,
    Json,
    LogLine,
    OutboxMessage,
    Run,
    StepRun,
    TaskResult,
    Waitpoint,
    Workflow,
    WorkflowVersion,
)
from .queueing import enqueue_run
from .text import text_problem
from .timeutil import UTCDateTime, utcnow

IDEMPOTENCY_WINDOW = timedelta(hours=24)
MAX_IDEMPOTENCY_KEY = 255  # Run.idempotency_key is String(255)
PAUSABLE = ("pending", "running", "sleeping", "suspended")


def _count(result: Any) -> int:
    """Rows changed by an UPDATE (typed loosely: SQLAlchemy's Result hides rowcount)."""
    return int(result.rowcount)


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
        problem = (
            text_problem(idempotency_key, MAX_IDEMPOTENCY_KEY)
            if isinstance(idempotency_key, str) and idempotency_key
            else f"must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )
        if problem:
            raise ValidationFailed(
                f"idempotency_key {problem}", [{"path": "/idempotency_key", "message": problem}]
            )
        existing = _idempotent_run(workflow.id, idempotency_key)
        if existing is not None:
            return existing, False
    run = new_run(pinned, input, trigger=trigger, idempotency_key=idempotency_key, user=user)
    # Not in the read transaction above: on SQLite, upgrading it to a write fails at once
    # ("database is locked") when a worker has committed since it began.
    write_transaction()
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


def new_run(
    version: WorkflowVersion,
    input: Any,
    *,
    trigger: str,
    idempotency_key: str | None = None,
    user: str | None = None,
) -> Run:
    """A pending run of ``version``, not yet added to the session, once its input is valid
    (raises ``ValidationFailed`` with one detail per problem). ``start_run`` records and
    enqueues it; a schedule's fire records it together with its fire row."""
    problems = input_problems(version.definition.get("input_schema"), input)
    if problems:
        raise ValidationFailed("The input does not match the workflow's input schema", problems)
    _check_payload_size(input, "input")
    return Run(
        id=new_id(),
        workflow_id=version.workflow_id,
        version_id=version.id,
        status="pending",
        trigger=trigger,
        input=input,
        idempotency_key=idempotency_key,
        created_by=user,
        step_count=len(version.steps),
    )


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
    try:
        size = len(json.dumps(value, allow_nan=False))
    except ValueError:
        raise ValidationFailed(f"The {what} contains NaN or Infinity, which JSON does not allow")
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
    """paused → where the run would be now: suspended or sleeping while its wait is open,
    else pending."""
    now = utcnow()
    target = case(
        (and_(Run.paused_from == "sleeping", Run.wake_at > now), "sleeping"),
        (Run.paused_from == "suspended", "suspended"),
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
    if run.status == "suspended":
        # A link used while paused, or a timeout that passed, acts now.
        settle_waits(run.id)
        run = get_run(run.id)
        db.session.refresh(run)
    elif run.status == "pending":
        enqueue_run(run.id)
    return run


def cancel_run(run_id: str) -> Run:
    """Any non-terminal status → canceled. Nothing is enqueued or recorded afterwards."""
    now = utcnow()
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.status.in_(ACTIVE))
        .values(
            status="canceled",
            finished_at=now,
            updated_at=now,
            wake_at=None,
            paused_from=None,
            error="Canceled",
        )
    )
    write_transaction()
    changed = db.session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
    if changed:
        db.session.execute(
            update(StepRun)
            .where(
                StepRun.run_id == run_id,
                StepRun.status.in_(("pending", "running", "sleeping", "suspended")),
            )
            .values(status="canceled", finished_at=now)
        )
        _close_waitpoints(run_id)
    db.session.commit()
    run = get_run(run_id)
    db.session.refresh(run)
    if not changed:
        _refuse_terminal(run, "be canceled")
    return run


# The operator actions by name, for every caller (API, Tasks page, CLI, bulk actions): a name
# that is not here is refused, never mapped to some default action.
ACTIONS: dict[str, Callable[[str], Run]] = {
    "pause": pause_run,
    "resume": resume_run,
    "cancel": cancel_run,
}


def run_action(action: str) -> Callable[[str], Run]:
    """The operator action called ``action``; an unknown name is a 400 ``ConsoleError``."""
    try:
        return ACTIONS[action]
    except (KeyError, TypeError):
        raise ConsoleError(f"Unknown action {action!r}; use {', '.join(ACTIONS)}") from None


# --------------------------------------------------------------------- the worker's side


@dataclass
class Claim:
    """A worker's hold on a run; ``owner`` fences every write it makes."""

    run_id: str
    owner: str


# Hot-path statements, built once with bind parameters: building SQLAlchemy statements on every
# checkpoint cost several times the commit itself (see bench/README.md).
_R, _S = Run.__table__, StepRun.__table__
_NOW = bindparam("b_now", type_=UTCDateTime())
_UNTIL = bindparam("b_until", type_=UTCDateTime())
_ID = bindparam("b_id", type_=String())
_OWNER = bindparam("b_owner", type_=String())
_LIVE = _R.c.status.not_in(tuple(sorted(TERMINAL)))

_CLAIM = (
    update(_R)
    .where(
        _R.c.id == _ID,
        or_(
            and_(
                _R.c.status == "pending",
                or_(_R.c.lease_owner.is_(None), _R.c.lease_expires_at < _NOW),
            ),
            and_(_R.c.status == "running", _R.c.lease_expires_at < _NOW),
            and_(_R.c.status == "sleeping", _R.c.wake_at <= _NOW),
        ),
    )
    .values(
        status="running",
        lease_owner=_OWNER,
        lease_expires_at=_UNTIL,
        wake_at=None,
        updated_at=_NOW,
        started_at=func.coalesce(_R.c.started_at, _NOW),
        # Taking over a running run means its worker stopped: record the replay.
        replays=_R.c.replays + case((_R.c.status == "running", 1), else_=0),
        replayed_at=case((_R.c.status == "running", _NOW), else_=_R.c.replayed_at),
    )
)
_FENCE_WHERE = (_R.c.id == _ID, _R.c.lease_owner == _OWNER, _LIVE)
_TOUCH = (
    update(_R)
    .where(*_FENCE_WHERE)
    .values(lease_expires_at=_UNTIL, updated_at=_NOW)
    .returning(_R.c.status)
)
_ADVANCE = (
    update(_R)
    .where(*_FENCE_WHERE)
    .values(
        current_step=bindparam("b_next", type_=Integer()),
        compute_ms=_R.c.compute_ms + bindparam("b_compute", type_=Integer()),
        lease_expires_at=_UNTIL,
        updated_at=_NOW,
    )
    .returning(_R.c.status)
)
_FINISH = (
    update(_R)
    .where(*_FENCE_WHERE)
    .values(
        status=bindparam("b_status", type_=String()),
        output=bindparam("b_output", type_=Json),
        error=bindparam("b_error", type_=Text()),
        finished_at=_NOW,
        updated_at=_NOW,
        lease_owner=None,
        lease_expires_at=None,
        paused_from=None,
    )
    .returning(_R.c.status)
)
_UPDATE_STEP = (
    update(_S)
    .where(
        _S.c.run_id == _ID,
        _S.c.name == bindparam("b_name", type_=String()),
        _S.c.status != "completed",
    )
    .values(
        status=bindparam("b_status", type_=String()),
        output=bindparam("b_output", type_=Json),
        error=bindparam("b_error", type_=Text()),
        attempts=bindparam("b_attempts", type_=Integer()),
        started_at=bindparam("b_started", type_=UTCDateTime()),
        finished_at=bindparam("b_finished", type_=UTCDateTime()),
        duration_ms=bindparam("b_duration", type_=Integer()),
        runs=bindparam("b_runs", type_=Integer()),
        sleep_reason=bindparam("b_sleep", type_=String()),
        context=bindparam("b_context", type_=Json),
        resume_data=bindparam("b_resume", type_=Json),
        timed_out=bindparam("b_timed_out", type_=Boolean()),
        callback_request=None,
    )
)
_INSERT_STEP = insert(_S)
_INSERT_TASK = insert(TaskResult.__table__)
_INSERT_LOGS = insert(LogLine.__table__)


def _lease_params(claim: Claim, now: datetime) -> dict[str, Any]:
    return {
        "b_id": claim.run_id,
        "b_owner": claim.owner,
        "b_now": now,
        "b_until": now + timedelta(seconds=_lease_seconds()),
    }


def claim_run(run_id: str, owner: str) -> bool:
    """Take a run that is due: pending, sleeping past its timer, or running on a dead lease."""
    params = _lease_params(Claim(run_id, owner), utcnow())
    conn = write_transaction()
    claimed = conn.execute(_CLAIM, params).rowcount == 1
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
    """Inside a write transaction: touch the run if the claim still holds; return its status.

    The general form, for the less frequent transitions; the hot path uses ``_ADVANCE``.
    """
    now = utcnow()
    values.setdefault("lease_expires_at", now + timedelta(seconds=_lease_seconds()))
    values["updated_at"] = now
    stmt = (
        update(Run)
        .where(
            Run.id == claim.run_id,
            Run.lease_owner == claim.owner,
            Run.status.not_in(tuple(TERMINAL)),
        )
        .values(**values)
        .returning(Run.status)
        .execution_options(synchronize_session=False)
    )
    return db.session.execute(stmt).scalar()


def _begin_fenced(claim: Claim) -> tuple[Any, str] | None:
    """Open a write transaction and touch the run if the claim still holds, which locks its
    row. Returns (connection, run status), or None, rolled back, when the claim was lost."""
    conn = write_transaction()
    status = conn.execute(_TOUCH, _lease_params(claim, utcnow())).scalar()
    if status is None:
        db.session.rollback()
        return None
    return conn, str(status)


def _log_rows(claim: Claim, logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(line, run_id=claim.run_id) for line in logs]


def _insert_logs(claim: Claim, logs: list[dict[str, Any]]) -> None:
    if logs:
        db.session.connection().execute(_INSERT_LOGS, _log_rows(claim, logs))


def record_task(claim: Claim, step: str, key: str, result: Any, logs: list[dict[str, Any]]) -> bool:
    """Record one ``ctx.task`` result. False if the claim was lost or the key is taken."""
    params = _lease_params(claim, utcnow())
    row = {
        "run_id": claim.run_id,
        "step_name": step,
        "key": key,
        "result": result,
        "created_at": params["b_now"],
    }
    rows = _log_rows(claim, logs)
    conn = write_transaction()
    if conn.execute(_TOUCH, params).scalar() is None:
        db.session.rollback()
        return False
    try:
        if rows:
            conn.execute(_INSERT_LOGS, rows)
        conn.execute(_INSERT_TASK, row)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def record_email(
    claim: Claim,
    step: str,
    runs: int,
    seq: int,
    recipients: list[str],
    subject: str,
    text: str,
    html: str | None,
) -> int | None:
    """Record an email in the Outbox before it is sent (so a replay never sends it twice).
    A message whose earlier sending failed is taken up again. None if the claim was lost."""
    key = {"run_id": claim.run_id, "step_name": step, "runs": runs, "seq": seq}
    if _begin_fenced(claim) is None:
        return None
    existing = db.session.execute(
        select(OutboxMessage.id, OutboxMessage.status).filter_by(**key)
    ).first()
    if existing is not None:
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == existing.id, OutboxMessage.status == "failed")
            .values(status="sending", error=None)
        )
        db.session.commit()
        return int(existing.id)
    message = OutboxMessage(
        **key, recipients=recipients, subject=subject, text=text, html=html, status="sending"
    )
    db.session.add(message)
    db.session.commit()
    return int(message.id)


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
    runs: int = 1
    sleep_reason: str | None = None
    context: Any = None
    resume_data: Any = None
    timed_out: bool = False

    @property
    def duration_ms(self) -> int:
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


def _write_step(conn: Any, claim: Claim, outcome: StepOutcome) -> None:
    if outcome.exists:
        conn.execute(
            _UPDATE_STEP,
            {
                "b_id": claim.run_id,
                "b_name": outcome.name,
                "b_status": outcome.status,
                "b_output": outcome.output,
                "b_error": outcome.error,
                "b_attempts": outcome.attempts,
                "b_started": outcome.started_at,
                "b_finished": outcome.finished_at,
                "b_duration": outcome.duration_ms,
                "b_runs": outcome.runs,
                "b_sleep": outcome.sleep_reason,
                "b_context": outcome.context,
                "b_resume": outcome.resume_data,
                "b_timed_out": outcome.timed_out,
            },
        )
    else:
        conn.execute(
            _INSERT_STEP,
            {
                "run_id": claim.run_id,
                "name": outcome.name,
                "position": outcome.position,
                "status": outcome.status,
                "output": outcome.output,
                "error": outcome.error,
                "attempts": outcome.attempts,
                "runs": outcome.runs,
                "timed_out": outcome.timed_out,
                "resume_data": outcome.resume_data,
                "sleep_reason": outcome.sleep_reason,
                "context": outcome.context,
                "started_at": outcome.started_at,
                "finished_at": outcome.finished_at,
                "duration_ms": outcome.duration_ms,
            },
        )


def record_step_completed(
    claim: Claim,
    outcome: StepOutcome,
    next_step: int,
    logs: list[dict[str, Any]],
    close_waits: bool = False,
) -> str | None:
    """Commit a step's checkpoint and move the run to the next step, in one transaction.

    Returns the run's status afterwards (``running``, or ``paused``/``pending`` when an
    operator acted meanwhile), or None when the claim was lost and nothing was recorded.
    """
    params = _lease_params(claim, utcnow())
    params.update(b_next=next_step, b_compute=outcome.duration_ms)
    rows = _log_rows(claim, logs)
    conn = write_transaction()
    status = conn.execute(_ADVANCE, params).scalar()
    if status is None:
        db.session.rollback()
        return None
    try:
        if rows:
            conn.execute(_INSERT_LOGS, rows)
        _write_step(conn, claim, outcome)
        if close_waits:
            _close_waitpoints(claim.run_id, outcome.name)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return None
    return str(status)


def record_step_failed(
    claim: Claim, outcome: StepOutcome, retry_at: datetime | None, logs: list[dict[str, Any]]
) -> str | None:
    """Record a failed attempt: the run sleeps until ``retry_at``, or fails when it is None."""
    compute = int((outcome.finished_at - outcome.started_at).total_seconds() * 1000)
    write_transaction()
    if retry_at is not None:
        status = _fence(
            claim,
            status=case((Run.status == "paused", "paused"), else_="sleeping"),
            paused_from=case((Run.status == "paused", "sleeping"), else_=Run.paused_from),
            wake_at=retry_at,
            lease_owner=None,
            lease_expires_at=None,
            compute_ms=Run.compute_ms + compute,
        )
        outcome.status = "sleeping"
        outcome.sleep_reason = "retry"
    else:
        status = _fence(
            claim,
            status="failed",
            error=outcome.error,
            finished_at=outcome.finished_at,
            lease_owner=None,
            lease_expires_at=None,
            paused_from=None,
            compute_ms=Run.compute_ms + compute,
        )
        outcome.status = "failed"
    if status is None:
        db.session.rollback()
        return None
    _insert_logs(claim, logs)
    _write_step(db.session.connection(), claim, outcome)
    if retry_at is None:
        _close_waitpoints(claim.run_id)
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
        result = db.session.execute(
            update(Run)
            .where(Run.id == claim.run_id, Run.lease_owner == claim.owner, Run.status == "pending")
            .values(status="running")
        )
        taken = result.rowcount == 1  # type: ignore[attr-defined]
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
        update(Run)
        .where(Run.id == claim.run_id, Run.lease_owner == claim.owner)
        .values(lease_owner=None, lease_expires_at=None)
    )
    db.session.commit()
    return db.session.scalar(select(Run.status).where(Run.id == claim.run_id))


def finish_run(
    claim: Claim,
    status: str,
    *,
    output: Any = None,
    error: str | None = None,
    skipped: Sequence[tuple[int, str]] = (),
) -> bool:
    """End the run as ``completed`` or ``failed``; remaining steps are marked skipped."""
    params = _lease_params(claim, utcnow())
    params.update(b_status=status, b_output=output, b_error=error)
    conn = write_transaction()
    if conn.execute(_FINISH, params).scalar() is None:
        db.session.rollback()
        return False
    _close_waitpoints(claim.run_id)
    if skipped:
        conn.execute(
            _INSERT_STEP,
            [
                {
                    "run_id": claim.run_id,
                    "name": name,
                    "position": position,
                    "status": "skipped",
                    "attempts": 0,
                    "runs": 1,
                    "timed_out": False,
                }
                for position, name in skipped
            ],
        )
    db.session.commit()
    return True


# ------------------------------------------------------- waits: suspend, rerun, ctx.wait

_W = Waitpoint.__table__


def _close_waitpoints(run_id: str, step: str | None = None) -> None:
    """The waits of a run (or of one of its steps) are over: their links now answer 410."""
    stmt = update(_W).where(_W.c.run_id == run_id, _W.c.state == "open")
    if step is not None:
        stmt = stmt.where(_W.c.step_name == step)
    db.session.execute(stmt.values(state="closed", decided_at=utcnow()))


def open_waitpoint(
    claim: Claim, step: str, runs: int, kind: str, expires_at: datetime | None
) -> str | None:
    """The waitpoint of this step execution, created (and committed) on first use, so that a
    link used before the step ends is kept. A replay of the execution gets the same one.
    Returns None when the claim was lost."""
    from .links import token_hash, waitpoint_token

    key = {"run_id": claim.run_id, "step_name": step, "runs": runs, "kind": kind}
    existing = db.session.scalar(select(Waitpoint.id).filter_by(**key))
    db.session.commit()
    if existing is not None:
        return str(existing)
    waitpoint_id = secrets.token_hex(16)
    row = dict(
        key,
        id=waitpoint_id,
        resume_hash=token_hash(waitpoint_token(waitpoint_id, "resume")),
        cancel_hash=token_hash(waitpoint_token(waitpoint_id, "cancel")),
        created_at=utcnow(),
        expires_at=expires_at,
        state="open",
    )
    fenced = _begin_fenced(claim)
    if fenced is None:
        return None
    conn = fenced[0]
    try:
        conn.execute(insert(_W), row)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = db.session.scalar(select(Waitpoint.id).filter_by(**key))
        db.session.commit()
        return str(existing) if existing else None
    return waitpoint_id


def _waitpoint_state(waitpoint_id: str) -> Any:
    return db.session.execute(
        select(Waitpoint.state, Waitpoint.payload, Waitpoint.expires_at).where(
            Waitpoint.id == waitpoint_id
        )
    ).one()


def _park(
    claim: Claim, outcome: StepOutcome, status: str, wake_at: datetime | None, next_step: int
) -> None:
    """Inside a fenced transaction: let go of the run, which now waits as ``status``
    (or stays paused, remembering that it would be waiting)."""
    db.session.execute(
        update(Run)
        .where(Run.id == claim.run_id)
        .values(
            status=case((Run.status == "paused", "paused"), else_=status),
            paused_from=case((Run.status == "paused", status), else_=Run.paused_from),
            wake_at=wake_at,
            current_step=next_step,
            compute_ms=Run.compute_ms + outcome.duration_ms,
            lease_owner=None,
            lease_expires_at=None,
        )
    )


def record_step_suspended(
    claim: Claim, outcome: StepOutcome, waitpoint_id: str, logs: list[dict[str, Any]]
) -> str | None:
    """The step called ``ctx.flow.suspend``: record its output and suspend the run until a
    link or the timeout. A link used while the step ran has already decided: then the step
    completes with its ``resume_data`` at once and the run's status is returned."""
    rows = _log_rows(claim, logs)
    # The fence locks the run's row first, so a link deciding now waits for this commit.
    fenced = _begin_fenced(claim)
    if fenced is None:
        return None
    conn, status = fenced
    state, payload, expires = _waitpoint_state(waitpoint_id)
    if rows:
        conn.execute(_INSERT_LOGS, rows)
    if state == "resumed":
        outcome.status, outcome.resume_data = "completed", payload
        _write_step(conn, claim, outcome)
        db.session.execute(
            update(Run)
            .where(Run.id == claim.run_id)
            .values(
                current_step=outcome.position + 1,
                compute_ms=Run.compute_ms + outcome.duration_ms,
            )
        )
        db.session.commit()
        return str(status)
    outcome.status = "suspended"
    _write_step(conn, claim, outcome)
    _park(claim, outcome, "suspended", expires, outcome.position + 1)
    db.session.commit()
    return "suspended"


def record_step_rerun(
    claim: Claim,
    outcome: StepOutcome,
    waitpoint_id: str,
    delay: float,
    context: Any,
    logs: list[dict[str, Any]],
) -> str | None:
    """The step called ``ctx.flow.rerun``: it executes again after ``delay`` seconds (at once
    if its resume link was used meanwhile), as execution ``runs + 1``."""
    rows = _log_rows(claim, logs)
    fenced = _begin_fenced(claim)
    if fenced is None:
        return None
    conn, status = fenced
    state, payload, _ = _waitpoint_state(waitpoint_id)
    woken = state == "resumed"
    now = utcnow()
    wake = now if woken else now + timedelta(seconds=delay)
    if rows:
        conn.execute(_INSERT_LOGS, rows)
    outcome.status, outcome.sleep_reason = "sleeping", "rerun"
    outcome.runs, outcome.context, outcome.attempts = outcome.runs + 1, context, 0
    _write_step(conn, claim, outcome)
    if woken:
        db.session.execute(
            update(StepRun)
            .where(StepRun.run_id == claim.run_id, StepRun.name == outcome.name)
            .values(callback_request=payload)
        )
    _park(claim, outcome, "sleeping", wake, outcome.position)
    db.session.commit()
    return "sleeping"


def record_step_waiting(
    claim: Claim, outcome: StepOutcome, until: datetime, logs: list[dict[str, Any]]
) -> str | None:
    """The step called ``ctx.wait``: it executes again from the top at ``until``, as the same
    execution (same ``runs`` and attempt)."""
    rows = _log_rows(claim, logs)
    fenced = _begin_fenced(claim)
    if fenced is None:
        return None
    conn = fenced[0]
    if rows:
        conn.execute(_INSERT_LOGS, rows)
    outcome.status, outcome.sleep_reason = "sleeping", "wait"
    _write_step(conn, claim, outcome)
    _park(claim, outcome, "sleeping", until, outcome.position)
    db.session.commit()
    return "sleeping"


CANCELED_WHILE_RUNNING = "The run was canceled while this step executed; its result was discarded."


def record_step_canceled(claim: Claim, outcome: StepOutcome, logs: list[dict[str, Any]]) -> bool:
    """A step whose execution ended after its run was canceled: keep what it did (its timing,
    log lines and any error) as a canceled step, so the run's story does not show a step that
    ran as pending. Only the worker that held the run when it was canceled writes this, once:
    the conditional update that releases its lease is the fence. False when nothing applies
    (the claim was lost some other way)."""
    conn = write_transaction()
    released = conn.execute(
        update(Run)
        .where(Run.id == claim.run_id, Run.status == "canceled", Run.lease_owner == claim.owner)
        .values(
            lease_owner=None,
            lease_expires_at=None,
            compute_ms=Run.compute_ms + outcome.duration_ms,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if released != 1:
        db.session.rollback()
        return False
    rows = _log_rows(claim, logs)
    if rows:
        conn.execute(_INSERT_LOGS, rows)
    exists = conn.execute(
        select(_S.c.id).where(_S.c.run_id == claim.run_id, _S.c.name == outcome.name)
    ).first()
    error = CANCELED_WHILE_RUNNING + (f"\n\n{outcome.error}" if outcome.error else "")
    _write_step(
        conn,
        claim,
        replace(
            outcome,
            status="canceled",
            output=None,
            error=error,
            exists=exists is not None,
            sleep_reason=None,
        ),
    )
    db.session.commit()
    return True


def rerun_callback(claim: Claim, step: str, runs: int, starting: bool) -> tuple[bool, Any]:
    """``ctx.run.callback_request`` of execution ``runs`` (> 1) of a re-run step: the request
    made to the previous execution's resume link, or None. Read from that link's waitpoint, so
    it stays the same across ``ctx.wait`` re-entries, retries and replays of the execution.

    ``starting``: the execution begins now, so that link's wait is over: it is closed (a later
    request answers 410 instead of being taken and lost), in the same transaction that reads
    whether a request came first. Returns (whether the claim holds, the callback)."""
    key = and_(
        _W.c.run_id == claim.run_id,
        _W.c.step_name == step,
        _W.c.runs == runs - 1,
        _W.c.kind == "rerun",
    )
    if starting:
        fenced = _begin_fenced(claim)
        if fenced is None:
            return False, None
        conn = fenced[0]
        conn.execute(
            update(_W).where(key, _W.c.state == "open").values(state="closed", decided_at=utcnow())
        )
    row = db.session.execute(select(_W.c.state, _W.c.payload).where(key)).first()
    db.session.commit()
    return True, (row.payload if row is not None and row.state == "resumed" else None)


def apply_waitpoint(waitpoint_id: str) -> str | None:
    """Carry a decided waitpoint over to its run, if the run still waits on it (idempotent);
    the run's status as that left it (None: nothing to carry over).

    ``resumed``/``timed_out`` on a suspend: the step completes with ``resume_data`` and the
    run becomes pending. ``resumed`` on a rerun: the step's next execution is due now, with
    ``ctx.run.callback_request``. ``canceled``: the run is canceled."""
    wp = db.session.get(Waitpoint, waitpoint_id)
    if wp is None or wp.state in ("open", "closed"):
        db.session.commit()
        return None
    run_id, step, runs, kind, state, payload = (
        wp.run_id,
        wp.step_name,
        wp.runs,
        wp.kind,
        wp.state,
        wp.payload,
    )
    if state == "canceled":
        db.session.commit()
        try:
            return cancel_run(run_id).status
        except Conflict:
            return get_run(run_id).status
    now = utcnow()
    write_transaction()
    # Lock the run's row first: a worker recording this step's end holds it until it commits.
    status = db.session.execute(
        update(Run).where(Run.id == run_id).values(updated_at=now).returning(Run.status)
    ).scalar()
    due = False
    if kind == "suspend":
        moved = db.session.execute(  # type: ignore[attr-defined]
            update(StepRun)
            .where(
                StepRun.run_id == run_id,
                StepRun.name == step,
                StepRun.status == "suspended",
                StepRun.runs == runs,
            )
            .values(status="completed", resume_data=payload, timed_out=state == "timed_out")
        ).rowcount
        if moved:
            due = (
                db.session.execute(  # type: ignore[attr-defined]
                    update(Run)
                    .where(Run.id == run_id, Run.status == "suspended")
                    .values(status="pending", wake_at=None)
                ).rowcount
                == 1
            )  # type: ignore[attr-defined]
            db.session.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == "paused", Run.paused_from == "suspended")
                .values(paused_from="pending", wake_at=None)
            )
    else:
        moved = db.session.execute(  # type: ignore[attr-defined]
            update(StepRun)
            .where(
                StepRun.run_id == run_id,
                StepRun.name == step,
                StepRun.runs == runs + 1,
                StepRun.status == "sleeping",
                StepRun.sleep_reason == "rerun",
            )
            .values(callback_request=payload)
        ).rowcount
        if moved:
            db.session.execute(
                update(Run)
                .where(Run.id == run_id, Run.status.in_(("sleeping", "paused")))
                .values(wake_at=now)
            )
            due = status == "sleeping"
    db.session.commit()
    # Read before the job is queued: a worker may claim the run at once, and the answer to
    # a link says what the link did (pending), not how far a worker has got since.
    status_now = db.session.scalar(select(Run.status).where(Run.id == run_id))
    if due:
        enqueue_run(run_id)
    return status_now


@dataclass
class LinkAnswer:
    run_id: str
    action: str
    status: str
    code: int
    outcome: str


LINK_STATES = {"resume": "resumed", "cancel": "canceled"}


def find_waitpoint(token: str, action: str) -> Waitpoint:
    from .links import token_hash

    column = Waitpoint.resume_hash if action == "resume" else Waitpoint.cancel_hash
    wp = db.session.scalar(select(Waitpoint).where(column == token_hash(token)))
    if wp is None:
        raise NotFound("This link is not valid: unknown or altered token")
    return wp


def act_on_link(token: str, action: str, payload: Any) -> LinkAnswer:
    """A request to a resume or cancel link: the first one decides, once (SPEC §4)."""
    wp = find_waitpoint(token, action)
    return act_on_waitpoint(wp.id, wp.run_id, action, payload)


def act_on_waitpoint(waitpoint_id: str, run_id: str, action: str, payload: Any) -> LinkAnswer:
    """What a request to one of the waitpoint's links does, without the token (the console's
    Approve and Reject, which do not depend on the key the links were signed with)."""
    target = LINK_STATES[action]
    now = utcnow()
    live_run = select(Run.id).where(Run.id == run_id, Run.status.not_in(tuple(TERMINAL)))
    write_transaction()
    won = (
        db.session.execute(  # type: ignore[attr-defined]
            update(Waitpoint)
            .where(
                Waitpoint.id == waitpoint_id,
                Waitpoint.state == "open",
                or_(Waitpoint.expires_at.is_(None), Waitpoint.expires_at > now),
                Waitpoint.run_id.in_(live_run),
            )
            .values(state=target, payload=payload, decided_at=now)
        ).rowcount
        == 1
    )  # type: ignore[attr-defined]
    db.session.commit()
    applied_status = apply_waitpoint(waitpoint_id) if won else None
    db.session.expire_all()
    state = db.session.scalar(select(Waitpoint.state).where(Waitpoint.id == waitpoint_id))
    run = get_run(run_id)
    if won:
        return LinkAnswer(run.id, target, applied_status or run.status, 200, target)
    if state == target:
        return LinkAnswer(run.id, f"already_{target}", run.status, 200, target)
    if state in ("resumed", "canceled"):
        return LinkAnswer(run.id, "conflict", run.status, 409, str(state))
    if state == "open":  # past its deadline, not yet recorded as such by the reconciler
        state = "timed_out" if run.status not in TERMINAL else "closed"
    return LinkAnswer(run.id, "gone", run.status, 410, str(state))


def settle_waits(run_id: str) -> None:
    """Time out a suspended run's expired wait and apply decisions made while it was paused."""
    now = utcnow()
    write_transaction()
    db.session.execute(
        update(Waitpoint)
        .where(
            Waitpoint.run_id == run_id,
            Waitpoint.kind == "suspend",
            Waitpoint.state == "open",
            Waitpoint.expires_at <= now,
        )
        .values(state="timed_out", decided_at=now)
    )
    db.session.commit()
    decided = db.session.scalars(
        select(Waitpoint.id).where(
            Waitpoint.run_id == run_id, Waitpoint.state.in_(("resumed", "timed_out"))
        )
    ).all()
    db.session.commit()
    for waitpoint_id in decided:
        apply_waitpoint(waitpoint_id)


def open_links(run_id: str) -> tuple[str, datetime | None] | None:
    """The open suspend waitpoint of a run, if any: (id, expires_at)."""
    row = db.session.execute(
        select(Waitpoint.id, Waitpoint.expires_at)
        .where(Waitpoint.run_id == run_id, Waitpoint.kind == "suspend", Waitpoint.state == "open")
        .order_by(Waitpoint.created_at.desc())
        .limit(1)
    ).first()
    return (row.id, row.expires_at) if row else None


def delete_version(version: WorkflowVersion) -> None:
    write_transaction()
    active = db.session.scalar(
        select(Run.id).where(Run.version_id == version.id, Run.status.in_(tuple(ACTIVE))).limit(1)
    )
    if active is not None:
        db.session.rollback()
        raise Conflict(
            f"Version {version.label!r} is used by active runs (e.g. {active}); "
            "cancel or finish them first"
        )
    version.deleted_at = utcnow()
    db.session.commit()


# ------------------------------------------------- the Tasks page: many runs, approvals

BULK_FROM = {"pause": PAUSABLE, "resume": ("paused",), "cancel": tuple(sorted(ACTIVE))}
BULK_BATCH = 200


def id_bound(moment: datetime, fill: str) -> str:
    """The smallest (``fill="0"``) or largest (``"z"``) run id created at ``moment``'s
    millisecond: ids are time-ordered (``console.ids``), so a time range is an id range."""
    from .ids import time_part

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


@dataclass
class Decision:
    """The answer to an Approve or Reject from the console."""

    run: Run
    ok: bool
    message: str


def decide_run(run_id: str, action: str, payload: Any) -> Decision:
    """Approve (``resume``) or reject (``cancel``) a suspended run from the console: exactly a
    request to the run's open resume or cancel link (SPEC §4), with ``payload`` as the body,
    so the step's ``resume_data`` is the same either way. A run that no longer waits (decided
    elsewhere, timed out, canceled) answers ``ok=False`` with what happened."""
    if action not in LINK_STATES:
        raise ValidationFailed("The action must be resume or cancel")
    run = get_run(run_id)
    waiting = open_links(run_id)
    if waiting is None:
        db.session.commit()
        return Decision(run, False, f"This run no longer waits for a decision: it is {run.status}.")
    _check_payload_size(payload, "payload")
    answer = act_on_waitpoint(waiting[0], run_id, action, payload)
    run = get_run(run_id)
    db.session.refresh(run)
    word = "Approved" if action == "resume" else "Rejected"
    if answer.code == 200 and not answer.action.startswith("already_"):
        return Decision(run, True, f"{word}: the run is now {run.status}.")
    if answer.code == 200:
        return Decision(run, False, f"Someone already {answer.outcome} this run; nothing changed.")
    if answer.code == 409:
        return Decision(
            run, False, f"Someone else {answer.outcome} this run first; it is {run.status}."
        )
    return Decision(run, False, f"This run's wait is over ({answer.outcome}); it is {run.status}.")


def allowed_actions(status: str, paused_from: str | None, waiting: bool) -> tuple[str, ...]:
    """The operator actions a run's state allows (SPEC §3), in the order a page offers them.
    ``waiting``: the run has an open suspend waitpoint, so it can be approved or rejected."""
    actions: list[str] = []
    if waiting and (status == "suspended" or paused_from == "suspended"):
        actions += ["approve", "reject"]
    if status in PAUSABLE:
        actions.append("pause")
    if status == "paused":
        actions.append("resume")
    if status in ACTIVE:
        actions.append("cancel")
    return tuple(actions)
