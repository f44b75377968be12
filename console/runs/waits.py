"""Waits and links: the waitpoint of a step that suspends or re-runs itself, ``ctx.wait``, and
what a resume or cancel link (or the console's Approve and Reject) does to the run."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, NotFound
from ..extensions import changed_rows, db, write_transaction
from ..models import TERMINAL, Run, StepRun, Waitpoint
from ..queueing import enqueue_run
from ..secrets import current_masker
from ..timeutil import utcnow
from .checkpoints import (
    _INSERT_LOGS,
    _W,
    Claim,
    StepOutcome,
    _begin_fenced,
    _log_rows,
    _write_step,
    record_execution,
)
from .notify import deliver_notification, record_notification
from .start import get_run


def open_waitpoint(
    claim: Claim, step: str, runs: int, kind: str, expires_at: datetime | None
) -> str | None:
    """The waitpoint of this step execution, created (and committed) on first use, so that a
    link used before the step ends is kept. A replay of the execution gets the same one.
    Returns None when the claim was lost."""
    from ..links import token_hash, waitpoint_token

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


def _begin_with_logs(claim: Claim, logs: list[dict[str, Any]]) -> tuple[Any, str] | None:
    """``_begin_fenced``, then the step's log lines, in the transaction that ends its wait."""
    rows = _log_rows(claim, logs)
    fenced = _begin_fenced(claim)
    if fenced is not None and rows:
        fenced[0].execute(_INSERT_LOGS, rows)
    return fenced


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
            recoveries=0,
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
    # The fence locks the run's row first, so a link deciding now waits for this commit.
    fenced = _begin_with_logs(claim, logs)
    if fenced is None:
        return None
    conn, status = fenced
    state, payload, expires = _waitpoint_state(waitpoint_id)
    record_execution(conn, claim, outcome)
    if state == "resumed":
        outcome.status, outcome.resume_data = "completed", payload
        _write_step(conn, claim, outcome)
        db.session.execute(
            update(Run)
            .where(Run.id == claim.run_id)
            .values(
                current_step=outcome.position + 1,
                compute_ms=Run.compute_ms + outcome.duration_ms,
                recoveries=0,
            )
        )
        db.session.commit()
        return str(status)
    outcome.status = "suspended"
    _write_step(conn, claim, outcome)
    _park(claim, outcome, "suspended", expires, outcome.position + 1)
    notice = record_notification(claim.run_id, "suspended", outcome.name, outcome.runs)
    db.session.commit()
    deliver_notification(notice)
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
    fenced = _begin_with_logs(claim, logs)
    if fenced is None:
        return None
    conn, status = fenced
    state, payload, _ = _waitpoint_state(waitpoint_id)
    woken = state == "resumed"
    now = utcnow()
    wake = now if woken else now + timedelta(seconds=delay)
    record_execution(conn, claim, outcome, "rerun_requested", {"delay": delay, "context": context})
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
    fenced = _begin_with_logs(claim, logs)
    if fenced is None:
        return None
    conn = fenced[0]
    record_execution(conn, claim, outcome)
    outcome.status, outcome.sleep_reason = "sleeping", "wait"
    _write_step(conn, claim, outcome)
    _park(claim, outcome, "sleeping", until, outcome.position)
    db.session.commit()
    return "sleeping"


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
        from .actions import cancel_run  # actions imports this module: decide_run uses links

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
    this_step = update(StepRun).where(StepRun.run_id == run_id, StepRun.name == step)
    if kind == "suspend":
        moved = changed_rows(
            db.session.execute(
                this_step.where(StepRun.status == "suspended", StepRun.runs == runs).values(
                    status="completed", resume_data=payload, timed_out=state == "timed_out"
                )
            )
        )
        if moved:
            due = (
                changed_rows(
                    db.session.execute(
                        update(Run)
                        .where(Run.id == run_id, Run.status == "suspended")
                        .values(status="pending", wake_at=None)
                    )
                )
                == 1
            )
            db.session.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == "paused", Run.paused_from == "suspended")
                .values(paused_from="pending", wake_at=None)
            )
    else:
        moved = changed_rows(
            db.session.execute(
                this_step.where(
                    StepRun.runs == runs + 1,
                    StepRun.status == "sleeping",
                    StepRun.sleep_reason == "rerun",
                ).values(callback_request=payload)
            )
        )
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
    from ..links import token_hash

    column = Waitpoint.resume_hash if action == "resume" else Waitpoint.cancel_hash
    wp = db.session.scalar(select(Waitpoint).where(column == token_hash(token)))
    if wp is None:
        raise NotFound("This link is not valid: unknown or altered token")
    return wp


def act_on_link(token: str, action: str, payload: Any) -> LinkAnswer:
    """A request to a resume or cancel link: the first one decides, once (docs/links.md)."""
    wp = find_waitpoint(token, action)
    return act_on_waitpoint(wp.id, wp.run_id, action, payload)


def act_on_waitpoint(waitpoint_id: str, run_id: str, action: str, payload: Any) -> LinkAnswer:
    """What a request to one of the waitpoint's links does, without the token (the console's
    Approve and Reject, which do not depend on the key the links were signed with)."""
    target = LINK_STATES[action]
    now = utcnow()
    # What a request brings in becomes resume_data or callback_request: masked like a step's
    # output, since a link's caller may echo a secret back.
    if payload is not None:
        payload = current_masker().value(payload)
    live_run = select(Run.id).where(Run.id == run_id, Run.status.not_in(tuple(TERMINAL)))
    write_transaction()
    won = (
        changed_rows(
            db.session.execute(
                update(Waitpoint)
                .where(
                    Waitpoint.id == waitpoint_id,
                    Waitpoint.state == "open",
                    or_(Waitpoint.expires_at.is_(None), Waitpoint.expires_at > now),
                    Waitpoint.run_id.in_(live_run),
                )
                .values(state=target, payload=payload, decided_at=now)
            )
        )
        == 1
    )
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
