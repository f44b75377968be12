"""The worker's side of a run: its claim and lease, the fenced checkpoints that record each
step's end (``record_step_*``, tasks, emails), the run's end, and the reads a replay starts from.

Every write here is fenced by the lease owner: a worker that lost its lease (it was presumed
dead and another took over) can record nothing.

Long: over the house's ~500 lines because the hot-path statements below are shared by all of
these writes and stay private to this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
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

from ..extensions import changed_rows, db, write_transaction
from ..models import (
    TERMINAL,
    Json,
    LogLine,
    OutboxMessage,
    Run,
    RunEvent,
    StepRun,
    TaskResult,
    Waitpoint,
)
from ..queueing import enqueue_run
from ..secrets.vault import opened_task_result
from ..text import storable
from ..timeutil import UTCDateTime, utcnow
from .notify import deliver_notification, record_notification
from .slots import slot_free
from .start import schema_problems


def _lease_seconds() -> float:
    return float(current_app.config["RUN_LEASE_SECONDS"])


@dataclass
class Claim:
    """A worker's hold on a run; ``owner`` fences every write it makes. ``recoveries``: how
    many workers died while the run's current step executed (this claim's takeover included)."""

    run_id: str
    owner: str
    recoveries: int = 0


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
        # In the same statement as the takeover, so that no death goes uncounted.
        recoveries=_R.c.recoveries + case((_R.c.status == "running", 1), else_=0),
    )
    .returning(_R.c.recoveries)
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
        recoveries=0,
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
        content_hash=bindparam("b_hash", type_=String()),
        reads=bindparam("b_reads", type_=Json),
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


def take_run(run_id: str, owner: str) -> Claim | None:
    """Take a run that is due: pending, sleeping past its timer, or running on a dead lease
    (which counts as a recovery of its current step). None when it is not due, or when its
    workflow's concurrency slots are taken (``slots``)."""
    params = _lease_params(Claim(run_id, owner), utcnow())
    conn = write_transaction()
    if not slot_free(conn, run_id, params["b_now"]):
        db.session.rollback()
        return None
    recoveries = conn.execute(_CLAIM, params).scalar()
    db.session.commit()
    return None if recoveries is None else Claim(run_id, owner, int(recoveries))


def claim_run(run_id: str, owner: str) -> bool:
    """``take_run``, for callers that only need to know whether the run was taken."""
    return take_run(run_id, owner) is not None


def too_many_recoveries(claim: Claim) -> bool:
    """Whether the run's current step must not execute again: workers died while it executed
    ``MAX_STEP_RECOVERIES`` times (a poison run, e.g. a step that exhausts the machine)."""
    limit = int(current_app.config["MAX_STEP_RECOVERIES"])
    return limit > 0 and claim.recoveries >= limit


def recovery_error(claim: Claim, step: str) -> str:
    return f"the worker died {claim.recoveries} times while step {step} was executing"


def fail_recovered_step(
    claim: Claim, step: str, position: int, attempts: int, row: Any
) -> str | None:
    """``too_many_recoveries``: the step fails with ``recovery_error`` (in the attempt that
    was executing, with no retry) and the run with it, instead of executing it once more.
    ``row``: the step's checkpoint row, if it has one. Returns the run's status, or None."""
    now = utcnow()
    error = recovery_error(claim, step)
    outcome = StepOutcome(
        name=step,
        position=position,
        status="failed",
        started_at=now,
        finished_at=now,
        attempts=attempts,
        error=error,
        exists=row is not None,
        runs=row.runs if row is not None else 1,
        context=row.context if row is not None else None,
    )
    log = {"step_name": step, "attempt": attempts, "level": "error", "message": error}
    return record_step_failed(claim, outcome, None, [dict(log, fields=None, created_at=now)])


def renew_lease(conn: Any, run_id: str, owner: str, seconds: float) -> bool:
    """Extend the lease; used by the worker's heartbeat thread on its own connection."""
    result = conn.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner)
        .values(lease_expires_at=utcnow() + timedelta(seconds=seconds))
    )
    return changed_rows(result) == 1


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
    return [dict(line, run_id=claim.run_id, message=storable(line["message"])) for line in logs]


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
        **key,
        recipients=[str(storable(r)) for r in recipients],
        subject=storable(subject),
        text=storable(text),
        html=storable(html),
        status="sending",
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
    # The step's content hash, and what the execution read (``workers.runtime.Reads``).
    content_hash: str | None = None
    reads: Any = None

    def __post_init__(self) -> None:
        self.error = storable(self.error)

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
                "b_hash": outcome.content_hash,
                "b_reads": outcome.reads,
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
                "content_hash": outcome.content_hash,
                "reads": outcome.reads,
            },
        )


_INSERT_EVENT = insert(RunEvent.__table__)


def record_execution(
    conn: Any, claim: Claim, outcome: StepOutcome, event: str | None = None, data: Any = None
) -> None:
    """For the journal, inside the checkpoint's transaction: the start of an execution whose
    step row a later execution overwrites (a failed attempt, a rerun, a wait, a suspend), and
    what ended it (``event``). A step that completes at once needs neither: its row says it."""
    rows = [
        {
            "run_id": claim.run_id,
            "at": outcome.started_at,
            "type": "step_started",
            "step_name": outcome.name,
            "runs": outcome.runs,
            "data": {"attempt": outcome.attempts},
        }
    ]
    if event is not None:
        rows.append(
            {
                "run_id": claim.run_id,
                "at": outcome.finished_at,
                "type": event,
                "step_name": outcome.name,
                "runs": outcome.runs,
                "data": data,
            }
        )
    conn.execute(_INSERT_EVENT, rows)


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
            recoveries=0,
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
    conn = db.session.connection()
    record_execution(
        conn, claim, outcome, "step_failed", {"attempt": outcome.attempts, "error": outcome.error}
    )
    _write_step(conn, claim, outcome)
    notice = None
    if retry_at is None:
        _close_waitpoints(claim.run_id)
        notice = record_notification(
            claim.run_id, "failed", outcome.name, outcome.runs, outcome.error
        )
    db.session.commit()
    deliver_notification(notice)
    return "failed" if retry_at is None else status


def continue_after_boundary(claim: Claim, status: str) -> bool:
    """At a step boundary: keep going, or let go of a run an operator paused.

    A run that was paused and resumed while its step ran is ``pending`` and still ours; it
    goes on if its workflow has a free slot, else it waits like any other pending run.
    """
    if status == "running":
        return True
    conn = write_transaction()
    if status == "pending" and slot_free(conn, claim.run_id, utcnow()):
        result = db.session.execute(
            update(Run)
            .where(Run.id == claim.run_id, Run.lease_owner == claim.owner, Run.status == "pending")
            .values(status="running")
        )
        taken = changed_rows(result) == 1
        db.session.commit()
        if taken:
            return True
    else:
        db.session.rollback()
    release_run(claim)
    return False


def hand_back_run(claim: Claim) -> bool:
    """A shutdown cut the run's step short: give the run back as ``pending`` without a lease,
    queued again, so the next claim is no takeover (neither a recovery nor a failed attempt
    is counted) and any worker may take it at once. A paused run stays paused (and is not
    queued). False if the claim was lost."""
    conn = write_transaction()
    status = conn.execute(
        update(_R)
        .where(*_FENCE_WHERE)
        .values(
            status=case((_R.c.status == "running", "pending"), else_=_R.c.status),
            lease_owner=None,
            lease_expires_at=None,
            updated_at=_NOW,
        )
        .returning(_R.c.status),
        _lease_params(claim, utcnow()),
    ).scalar()
    db.session.commit()
    if status == "pending":
        enqueue_run(claim.run_id)
    return status is not None


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
    params.update(b_status=status, b_output=output, b_error=storable(error))
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
    notice = None
    if status == "failed":
        notice = record_notification(claim.run_id, "failed", None, error=storable(error))
    db.session.commit()
    deliver_notification(notice)
    return True


# Here rather than in ``waits``: a step's or a run's end closes its waits in the same
# transaction, and ``waits`` builds on this module.
_W = Waitpoint.__table__


def _close_waitpoints(run_id: str, step: str | None = None) -> None:
    """The waits of a run (or of one of its steps) are over: their links now answer 410."""
    stmt = update(_W).where(_W.c.run_id == run_id, _W.c.state == "open")
    if step is not None:
        stmt = stmt.where(_W.c.step_name == step)
    db.session.execute(stmt.values(state="closed", decided_at=utcnow()))


CANCELED_WHILE_RUNNING = "The run was canceled while this step executed; its result was discarded."


def record_step_canceled(claim: Claim, outcome: StepOutcome, logs: list[dict[str, Any]]) -> bool:
    """A step whose execution ended after its run was canceled: keep what it did (its timing,
    log lines and any error) as a canceled step, so the run's story does not show a step that
    ran as pending. Only the worker that held the run when it was canceled writes this, once:
    the conditional update that releases its lease is the fence. False when nothing applies
    (the claim was lost some other way)."""
    conn = write_transaction()
    released = changed_rows(
        conn.execute(
            update(Run)
            .where(Run.id == claim.run_id, Run.status == "canceled", Run.lease_owner == claim.owner)
            .values(
                lease_owner=None,
                lease_expires_at=None,
                compute_ms=Run.compute_ms + outcome.duration_ms,
            )
            .execution_options(synchronize_session=False)
        )
    )
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
    record_execution(conn, claim, outcome)
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


# ------------------------------------------------------------------ what a replay starts from

_LOAD_RUN = select(Run.id, Run.input, Run.version_id).where(Run.id == _ID)
_LOAD_STEPS = select(
    StepRun.name,
    StepRun.status,
    StepRun.output,
    StepRun.resume_data,
    StepRun.timed_out,
    StepRun.attempts,
    StepRun.runs,
    StepRun.sleep_reason,
    StepRun.context,
    StepRun.callback_request,
    StepRun.recovered,
    StepRun.previous_output,
).where(StepRun.run_id == _ID)
_LOAD_SENT = select(OutboxMessage.step_name, OutboxMessage.runs, OutboxMessage.seq).where(
    OutboxMessage.run_id == _ID, OutboxMessage.status != "failed"
)
_LOAD_TASKS = select(TaskResult.step_name, TaskResult.key, TaskResult.result).where(
    TaskResult.run_id == _ID
)
REPLAY_READS = (_LOAD_RUN, _LOAD_STEPS, _LOAD_TASKS, _LOAD_SENT)


@dataclass
class Replay:
    """A claimed run as its worker starts from it: plain rows, not ORM objects, so that
    nothing reloads after the read transaction ends."""

    run: Any  # id, input, version_id
    steps: dict[str, Any]  # step name -> its checkpoint row
    tasks: dict[str, dict[str, Any]]  # step name -> task key -> result
    sent: set[tuple[Any, ...]]  # (step, runs, seq) of the emails already recorded


def load_replay(run_id: str) -> Replay:
    """The whole replay state: the run, its step checkpoints, task results and sent emails."""
    params = {"b_id": run_id}
    run = db.session.execute(_LOAD_RUN, params).one()
    steps = {r.name: r for r in db.session.execute(_LOAD_STEPS, params)}
    tasks: dict[str, dict[str, Any]] = {}
    for t in db.session.execute(_LOAD_TASKS, params):
        tasks.setdefault(t.step_name, {})[t.key] = opened_task_result(t.result)  # unsealed
    sent = {tuple(r) for r in db.session.execute(_LOAD_SENT, params)}
    return Replay(run, steps, tasks, sent)


def output_error(schema: dict | None, output: Any) -> str | None:
    """Why a run's output fails its workflow's output schema, or None when it matches."""
    if not schema:
        return None
    problems = [f"{p['path']}: {p['message']}" for p in schema_problems(schema, output)]
    if not problems:
        return None
    return "The run's output does not match the output schema:\n" + "\n".join(problems)
