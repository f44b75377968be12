"""Operator actions on runs: pause, resume and cancel (the one ``ACTIONS`` table every caller
uses), the actions a run's state allows, and Approve/Reject from the console."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, insert, update

from ..errors import Conflict, ConsoleError, ValidationFailed
from ..extensions import changed_rows, db, write_transaction
from ..models import ACTIVE, TERMINAL, Run, RunEvent, StepRun
from ..queueing import enqueue_run
from ..timeutil import utcnow
from .checkpoints import _close_waitpoints
from .slots import start_waiting
from .start import _check_payload_size, get_run
from .waits import LINK_STATES, act_on_waitpoint, open_links, settle_waits

PAUSABLE = ("pending", "running", "sleeping", "suspended")


def _act(run_id: str, stmt: Any, event: str | None = None) -> tuple[Run, bool]:
    """Apply one conditional UPDATE; ``event`` (the journal's ``paused``/``unpaused``) is
    recorded in the same transaction when it changed the run."""
    write_transaction()
    changed = changed_rows(db.session.execute(stmt)) == 1
    if changed and event is not None:
        db.session.execute(insert(RunEvent).values(run_id=run_id, at=utcnow(), type=event))
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
    run, changed = _act(run_id, stmt, "paused")
    if not changed:
        _refuse_terminal(run, "be paused")
    elif run.paused_from == "running":
        start_waiting(run_id)  # a paused run holds no slot, even while its step finishes
        db.session.refresh(run)
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
    run, changed = _act(run_id, stmt, "unpaused")
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
    changed = changed_rows(db.session.execute(stmt)) == 1
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
    if changed:
        start_waiting(run_id)  # its slot, if it held one, is free at once
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


@dataclass
class Decision:
    """The answer to an Approve or Reject from the console."""

    run: Run
    ok: bool
    message: str


def decide_run(run_id: str, action: str, payload: Any) -> Decision:
    """Approve (``resume``) or reject (``cancel``) a suspended run from the console: exactly a
    request to the run's open resume or cancel link (docs/links.md), with ``payload`` as the body,
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
    """The operator actions a run's state allows (docs/runs.md), in the order a page offers them.
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
