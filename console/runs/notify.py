"""Notifications (docs/operations.md#notifications): a workflow's ``notify`` emails its addresses
when a run fails, and, when ``on`` asks for it, when a run starts waiting for an approval.

The message is recorded in the Outbox in the transaction of the transition it reports (a run
fails only once: the fenced update that fails it is the one that records it), under a key of its
own (``seq`` -1 for a failure, -2 for an approval wait of a step execution), so that no run is
ever reported twice; it is delivered after the commit. A delivery that fails is kept in the
Outbox as failed; it never changes the run.
"""

from __future__ import annotations

import logging

from sqlalchemy import insert, select

from ..extensions import db
from ..mail import MailError, send_recorded
from ..models import OutboxMessage, Run, Workflow
from ..text import storable

log = logging.getLogger(__name__)
SEQ = {"failed": -1, "suspended": -2}


def _target(run_id: str, event: str) -> tuple[str, list[str]] | None:
    row = db.session.execute(
        select(Workflow.name, Workflow.notify)
        .join(Run, Run.workflow_id == Workflow.id)
        .where(Run.id == run_id)
    ).first()
    if row is None or not row.notify or event not in row.notify.get("on", ()):
        return None
    return row.name, list(row.notify.get("email") or [])


def record_notification(
    run_id: str, event: str, step: str | None, runs: int = 0, error: str | None = None
) -> int | None:
    """Inside the transition's transaction: record the email for ``event`` (failed or
    suspended) if the workflow asks for it. Returns the Outbox id to deliver after commit."""
    from ..serialize import run_url

    target = _target(run_id, event)
    if target is None:
        return None
    workflow, recipients = target
    url = run_url(run_id)
    if event == "failed":
        subject = f"Run {run_id} of {workflow} failed"
        where = f" at step {step}" if step else ""
        text = (
            f"The run {run_id} of the workflow {workflow} failed{where}.\n\n"
            f"Workflow: {workflow}\nRun: {run_id}\nStep: {step or '-'}\n"
            f"Error:\n{error or '-'}\n\nThe run: {url}\n"
        )
    else:
        subject = f"Run {run_id} of {workflow} waits for approval"
        text = (
            f"The run {run_id} of the workflow {workflow} waits for an approval at step "
            f"{step}.\n\nWorkflow: {workflow}\nRun: {run_id}\nStep: {step}\n\n"
            f"Approve or reject it on the run's page: {url}\n"
        )
    result = db.session.execute(
        insert(OutboxMessage)
        .values(
            run_id=run_id,
            step_name=step or "",
            runs=runs,
            seq=SEQ[event],
            recipients=recipients,
            subject=storable(subject),
            text=storable(text),
            html=None,
            status="sending",
        )
        .returning(OutboxMessage.id)
    )
    return int(result.scalar_one())


def deliver_notification(message_id: int | None) -> None:
    """After the commit: send a recorded notification (a failure is kept in the Outbox)."""
    if message_id is None:
        return
    try:
        send_recorded(message_id)
    except MailError as exc:
        log.warning("notification %s was not delivered: %s", message_id, exc)
    except Exception:  # the run's transition is committed; a mail problem must not undo it
        log.exception("notification %s was not delivered", message_id)
        db.session.rollback()
