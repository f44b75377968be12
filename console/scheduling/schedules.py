"""Schedules (docs/): cron expressions in IANA timezones that start runs of a workflow.

A schedule is workflow-level state (the ``schedules`` table), not part of a version: editing
one never publishes code. This module owns what a schedule's fields mean (one clear message
per problem; the cron and timezone checks are ``cron.py``'s), syncing a workflow's schedules
from a definition, and the editor's create/update/delete.

Redis registration lives in ``workers.schedules``; after a change here commits, the scheduler
is asked to reconcile at once (``request_reconcile``) and reconciles on its own every few
seconds anyway.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from typing import Any

from flask import current_app, has_app_context
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import ValidationFailed
from ..extensions import db, write_transaction
from ..models import Schedule, Workflow
from ..text import nul_problems, text_problem
from ..timeutil import utcnow
from .cron import cron_error, timezone_error
from .trying import snippet_error

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MISSED_POLICIES = ("latest", "skip", "all")
# Characters, as the columns of console/models.py hold them (Schedule.cron is String(120),
# Schedule.timezone String(64)); an input snippet is Text, limited like a step's code.
MAX_CRON = 120
MAX_TIMEZONE = 64
MAX_INPUT_CODE = 100_000
DEFAULT_MISSED = "latest"
OVERLAP_POLICIES = ("allow", "skip")
DEFAULT_OVERLAP = "allow"
DIRTY_KEY = "console:schedules:dirty"


# ------------------------------------------------------------------------------ validation


def input_snippet_error(code: str) -> str | None:
    try:
        tree = ast.parse(code, filename="<input>")
        compile(tree, "<input>", "exec")
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    except ValueError as exc:  # null bytes
        return str(exc)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "input":
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            if not (positional or args.vararg) or len(positional) - len(args.defaults) > 1:
                return f"line {node.lineno}: input must take one argument, now"
            return None
    return "the snippet does not define input(now)"


def input_error(value: Any) -> str | None:
    if isinstance(value, str):
        return input_snippet_error(value)
    if not isinstance(value, dict):
        return "must be a JSON object or a snippet defining input(now)"
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return "contains NaN or Infinity, which JSON does not allow"
    return None


def schema_error(schema: Any, value: Any) -> str | None:
    """Why an input does not satisfy the workflow's input schema (every problem, one line), or
    None. A schema that is not valid itself checks nothing here: the definition reports it."""
    if not isinstance(schema, dict) or not schema or not isinstance(value, dict):
        return None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return None
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return None
    found = [
        (f"/{'/'.join(str(p) for p in e.absolute_path)}: " if e.absolute_path else "") + e.message
        for e in errors
    ]
    return "does not satisfy the workflow's input schema: " + "; ".join(found)


def workflow_input_schema(workflow: Workflow) -> Any:
    """The input schema a schedule's runs are checked against: the latest published version's
    (what a fire starts), else the draft's."""
    latest = workflow.latest_version
    if latest is not None:
        return latest.definition.get("input_schema")
    return (workflow.draft or {}).get("input_schema")


def default_timezone() -> str:
    """``CONSOLE_TIMEZONE``: what a schedule without a timezone uses."""
    if not has_app_context():
        return "UTC"
    return str(current_app.config.get("CONSOLE_TIMEZONE") or "UTC")


def normalise_schedule(
    raw: dict[str, Any], input_schema: Any = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """A schedule as the definition format has it with defaults filled in, and its
    problems by field. ``missed`` and ``overlap`` are kept only when not the default. A JSON
    input is checked against ``input_schema`` (a snippet's result is checked when it fires,
    and on the Schedules page by a dry run)."""
    schedule: dict[str, Any] = {
        "name": raw.get("name"),
        "cron": raw.get("cron"),
        "timezone": raw.get("timezone") or default_timezone(),
        "input": raw.get("input", {}),
        "enabled": raw.get("enabled", True),
    }
    missed = raw.get("missed", DEFAULT_MISSED)
    if missed != DEFAULT_MISSED:
        schedule["missed"] = missed
    overlap = raw.get("overlap", DEFAULT_OVERLAP)
    if overlap != DEFAULT_OVERLAP:
        schedule["overlap"] = overlap
    if isinstance(schedule["cron"], str):
        schedule["cron"] = " ".join(schedule["cron"].split())
    problems: dict[str, str] = {}
    if not isinstance(schedule["name"], str) or not NAME_RE.match(schedule["name"]):
        problems["name"] = "must match ^[a-z][a-z0-9_]{0,62}$"
    for key, limit in (("cron", MAX_CRON), ("timezone", MAX_TIMEZONE), ("input", MAX_INPUT_CODE)):
        if isinstance(schedule[key], str):
            problem = text_problem(schedule[key], limit)
            if problem:
                problems[key] = problem
    for key, check in (
        ("cron", cron_error),
        ("timezone", timezone_error),
        ("input", input_error),
    ):
        error = None if key in problems else check(schedule[key])
        if error:
            problems[key] = error
    if isinstance(schedule["input"], dict):
        for item in nul_problems(schedule["input"]):
            problems.setdefault("input" + item["path"].rstrip("/"), item["message"])
    if "input" not in problems:
        error = schema_error(input_schema, schedule["input"])
        if error:
            problems["input"] = error
    if not isinstance(schedule["enabled"], bool):
        problems["enabled"] = "must be true or false"
    if missed not in MISSED_POLICIES:
        problems["missed"] = "must be one of latest, skip, all"
    if overlap not in OVERLAP_POLICIES:
        problems["overlap"] = "must be allow or skip"
    return schedule, problems


# --------------------------------------------------------------------- the domain: editing


def schedule_definition(schedule: Schedule) -> dict[str, Any]:
    """A schedule in the definition format."""
    data: dict[str, Any] = {
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "input": schedule.input_code if schedule.input_code is not None else schedule.input,
        "enabled": schedule.enabled,
    }
    if schedule.missed != DEFAULT_MISSED:
        data["missed"] = schedule.missed
    if schedule.overlap != DEFAULT_OVERLAP:
        data["overlap"] = schedule.overlap
    return data


def schedules_of(workflow_id: int) -> list[Schedule]:
    return list(
        db.session.scalars(
            select(Schedule).where(Schedule.workflow_id == workflow_id).order_by(Schedule.name)
        )
    )


def _apply(row: Schedule, data: dict[str, Any]) -> None:
    """Set a row from a normalised schedule. A change to when it fires (or enabling it) starts
    it afresh: fires before the change are not caught up on as missed."""
    value = data.get("input", {})
    timing = (data["cron"], data["timezone"], data["enabled"])
    if (row.cron, row.timezone, row.enabled) != timing:
        row.next_fire_at = None
    row.name = data["name"]
    row.cron, row.timezone, row.enabled = timing
    row.input, row.input_code = (None, value) if isinstance(value, str) else (value, None)
    row.missed = data.get("missed", DEFAULT_MISSED)
    row.overlap = data.get("overlap", DEFAULT_OVERLAP)
    row.updated_at = utcnow()


def sync_schedules(workflow: Workflow, schedules: list[dict[str, Any]]) -> None:
    """Make the workflow's schedules those of a definition, by name: rows of names that stay
    are updated (keeping their history), new names are created, the others deleted. Runs in
    the caller's transaction; call ``request_reconcile`` after the commit."""
    rows = {row.name: row for row in schedules_of(workflow.id)} if workflow.id else {}
    wanted = {s["name"] for s in schedules}
    gone = [row.id for name, row in rows.items() if name not in wanted]
    if gone:
        for name in [n for n in rows if n not in wanted]:
            db.session.expunge(rows.pop(name))
        db.session.execute(delete(Schedule).where(Schedule.id.in_(gone)))
    for data in schedules:
        row = rows.get(data["name"])
        if row is None:
            row = Schedule(workflow=workflow, cron="", timezone="UTC", enabled=False)
            db.session.add(row)
        _apply(row, data)


def request_reconcile() -> None:
    """Ask the scheduler process to reconcile its registrations now (it also does every few
    seconds, so a Redis that is down only delays this)."""
    from ..queueing import get_redis

    try:
        get_redis().set(DIRTY_KEY, "1")
    except Exception as exc:  # Redis down: the periodic reconcile catches up
        log.warning("could not signal the scheduler (%s)", exc)


def _validated(raw: dict[str, Any], workflow: Workflow, try_input: bool) -> dict[str, Any]:
    schema = workflow_input_schema(workflow)
    data, problems = normalise_schedule(raw, schema)
    if not problems and try_input and isinstance(data["input"], str):
        error = snippet_error(data["input"], data["name"], data["cron"], data["timezone"], schema)
        if error:
            problems["input"] = error
    if problems:
        raise ValidationFailed(
            "The schedule is not valid",
            [{"path": f"/{key}", "message": message} for key, message in problems.items()],
        )
    return data


def _commit_or_duplicate(name: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ValidationFailed(
            "The schedule is not valid",
            [{"path": "/name", "message": f"this workflow already has a schedule named {name!r}"}],
        )
    request_reconcile()


def create_schedule(workflow: Workflow, raw: dict[str, Any], try_input: bool = False) -> Schedule:
    """Add a schedule; ``try_input``: a snippet is first tried on a worker (``trying``)."""
    data = _validated(raw, workflow, try_input)
    workflow_id = workflow.id
    write_transaction()
    row = Schedule(workflow_id=workflow_id, cron="", timezone="UTC", enabled=False)
    _apply(row, data)
    db.session.add(row)
    _commit_or_duplicate(data["name"])
    return row


def update_schedule(schedule: Schedule, raw: dict[str, Any], try_input: bool = False) -> Schedule:
    data = _validated(raw, schedule.workflow, try_input)
    schedule_id = schedule.id
    write_transaction()
    row = db.session.get(Schedule, schedule_id)
    if row is None:
        raise ValidationFailed("The schedule was deleted meanwhile")
    _apply(row, data)
    _commit_or_duplicate(data["name"])
    return row


def set_enabled(schedule: Schedule, enabled: bool) -> None:
    schedule_id = schedule.id
    write_transaction()
    db.session.execute(
        update(Schedule)
        .where(Schedule.id == schedule_id, Schedule.enabled != enabled)
        .values(enabled=enabled, next_fire_at=None, updated_at=utcnow())
    )
    db.session.commit()
    request_reconcile()


def delete_schedule(schedule: Schedule) -> None:
    schedule_id = schedule.id
    write_transaction()
    db.session.execute(delete(Schedule).where(Schedule.id == schedule_id))
    db.session.commit()
    request_reconcile()
