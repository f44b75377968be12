"""Which workflows use a secret: the names their latest versions write literally,
``ctx.secrets["NAME"]`` / ``ctx.secrets.get("NAME")`` in code and ``{{ secrets.NAME }}`` in
a built-in kind's settings."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select

from ..extensions import db
from ..models import Workflow, WorkflowVersion
from ..stepkinds import references

CODE_RE = re.compile(r"""ctx\.secrets(?:\[\s*|\.get\(\s*)(["'])([A-Z][A-Z0-9_]{0,62})\1""")
REFERENCE_RE = re.compile(r"^secrets\.([A-Z][A-Z0-9_]{0,62})$")


def step_secret_names(step: dict[str, Any]) -> set[str]:
    """The secret names one step of a definition uses."""
    names = {m.group(2) for m in CODE_RE.finditer(str(step.get("code") or ""))}
    for ref in references(step.get("config") or {}):
        match = REFERENCE_RE.match(ref)
        if match:
            names.add(match.group(1))
    return names


def definition_secret_names(definition: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for step in definition.get("steps") or []:
        if isinstance(step, dict):
            names |= step_secret_names(step)
    return names


def used_by() -> dict[str, list[str]]:
    """Secret name → the workflows (sorted) whose latest version uses it."""
    latest = (
        select(WorkflowVersion.workflow_id, func.max(WorkflowVersion.number).label("number"))
        .where(WorkflowVersion.deleted_at.is_(None))
        .group_by(WorkflowVersion.workflow_id)
        .subquery()
    )
    rows = db.session.execute(
        select(Workflow.name, WorkflowVersion.definition)
        .join(WorkflowVersion, WorkflowVersion.workflow_id == Workflow.id)
        .join(
            latest,
            (latest.c.workflow_id == WorkflowVersion.workflow_id)
            & (latest.c.number == WorkflowVersion.number),
        )
        .order_by(Workflow.name)
    )
    found: dict[str, list[str]] = {}
    for workflow, definition in rows:
        for name in definition_secret_names(definition or {}):
            found.setdefault(name, []).append(workflow)
    return found
