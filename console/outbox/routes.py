"""The Outbox page. Operators only: messages carry approval (resume and cancel) links."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, render_template, request
from sqlalchemy import select

from ..auth import role
from ..extensions import db
from ..models import OutboxMessage, Run, Workflow
from . import bp

PAGE_SIZE = 50


def before_cursor() -> int | None:
    before = request.args.get("before")
    if before is None:
        return None
    if not before.isdigit():
        abort(400, "before must be a message id")
    return int(before)


@bp.get("/outbox")
@role("operator")
def index() -> Any:
    before = before_cursor()
    query = (
        select(OutboxMessage, Workflow.name)
        .join(Run, Run.id == OutboxMessage.run_id)
        .join(Workflow, Workflow.id == Run.workflow_id)
        .order_by(OutboxMessage.id.desc())
        .limit(PAGE_SIZE + 1)
    )
    if before is not None:
        query = query.where(OutboxMessage.id < before)
    rows = db.session.execute(query).all()
    older = rows[PAGE_SIZE - 1][0].id if len(rows) > PAGE_SIZE else None
    return render_template(
        "outbox/index.html",
        messages=rows[:PAGE_SIZE],
        before=before,
        older=older,
        delivering=bool(current_app.config.get("MAIL_SERVER")),
    )
