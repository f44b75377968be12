"""Schedules (SPEC §7): cron expressions in IANA timezones that start runs of a workflow.

A schedule is workflow-level state (the ``schedules`` table), not part of a version: editing
one never publishes code. This module owns what a schedule means:

- validation of its fields, with one clear message per problem;
- its fire times, computed on the wall clock of its timezone. croniter walks local wall-clock
  times; each is then placed on the UTC timeline: a local time that does not exist that day
  (the spring-forward gap) fires once at the next valid minute, and an ambiguous one (the
  repeated hour in autumn) fires once, at its first occurrence;
- syncing a workflow's schedules from a definition, and the editor's create/update/delete;
- firing: one run per (schedule, fire time), guaranteed by the ``ScheduleFire`` unique row
  inserted in the same transaction as the run (``fire``, called by the worker job);
- missed fires after an outage: the per-schedule policy ``skip``, ``latest`` (default) or
  ``all`` (``catch_up``, called by the scheduler process).

Redis registration lives in ``workers.schedules``; after a change here commits, the scheduler
is asked to reconcile at once (``request_reconcile``) and reconciles on its own every few
seconds anyway.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError
from flask import current_app, has_app_context
from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError

from .errors import ValidationFailed
from .extensions import db, write_transaction
from .models import Run, Schedule, ScheduleFire, Workflow, WorkflowVersion
from .text import nul_problems, text_problem
from .timeutil import utcnow

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MISSED_POLICIES = ("latest", "skip", "all")
# Characters, as the columns of console/models.py hold them (Schedule.cron is String(120),
# Schedule.timezone String(64)); an input snippet is Text, limited like a step's code.
MAX_CRON = 120
MAX_TIMEZONE = 64
MAX_INPUT_CODE = 100_000
DEFAULT_MISSED = "latest"
DIRTY_KEY = "console:schedules:dirty"
# Fires examined per schedule per reconcile pass; "all" catches up on longer outages over
# several passes, "latest" and "skip" jump to the latest missed fire.
CATCH_UP_BATCH = 500
# A gap longer than this (minutes) is not a daylight-saving change (at most a skipped day).
MAX_GAP_MINUTES = 2 * 24 * 60

FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
MONTH_NAMES = {
    name: i + 1
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
DAY_NAMES = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
DAY_WORDS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTH_WORDS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


# ------------------------------------------------------------------------------ validation


class CronError(ValueError):
    pass


def _field_value(token: str, index: int) -> int:
    name, low, high = FIELDS[index]
    names = MONTH_NAMES if index == 3 else DAY_NAMES if index == 4 else {}
    if token.lower() in names:
        return names[token.lower()]
    if not token.isdigit():
        hint = " or a name like JAN" if index == 3 else " or a name like MON" if index == 4 else ""
        raise CronError(f"{name}: {token!r} is not a number{hint}")
    value = int(token)
    if not low <= value <= high:
        raise CronError(f"{name}: {value} is out of range {low}-{high}")
    return value


def field_values(text: str, index: int) -> set[int]:
    """The values one cron field matches (0-6 for days of the week, 7 folded to 0)."""
    name, low, high = FIELDS[index]
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{name}: empty item in {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: the step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _field_value(first, index), _field_value(last, index)
            if start > end:
                raise CronError(f"{name}: the range {base!r} goes backwards")
        else:
            start = _field_value(base, index)
            end = high if slash else start
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:
        values = (values - {7}) | {0}
    return values


def cron_error(expr: Any) -> str | None:
    """Why ``expr`` is not a 5-field cron expression we can fire, or None."""
    if not isinstance(expr, str) or not expr.strip():
        return "is required: 5 fields, minute hour day-of-month month day-of-week"
    fields = expr.split()
    if len(fields) != 5:
        return (
            "must have 5 fields (minute hour day-of-month month day-of-week), "
            f"not {len(fields)}: for example 0 9 * * *"
        )
    try:
        for index, text in enumerate(fields):
            field_values(text, index)
    except CronError as exc:
        return str(exc)
    if not croniter.is_valid(" ".join(fields)):
        return "is not a cron expression the scheduler understands"
    try:
        next_fire(" ".join(fields), "UTC", utcnow())
    except (CroniterError, StopIteration):
        return "never matches a date (for example 30 February)"
    return None


def timezone_error(name: Any) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return "is required (an IANA name such as Europe/Berlin)"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown timezone {name!r} (use an IANA name such as Asia/Seoul)"
    return None


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


def default_timezone() -> str:
    """``CONSOLE_TIMEZONE``: what a schedule without a timezone uses."""
    if not has_app_context():
        return "UTC"
    return str(current_app.config.get("CONSOLE_TIMEZONE") or "UTC")


def normalise_schedule(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A schedule as the definition format has it (SPEC §7) with defaults filled in, and its
    problems by field. ``missed`` is kept only when it is not the default."""
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
    if not isinstance(schedule["enabled"], bool):
        problems["enabled"] = "must be true or false"
    if missed not in MISSED_POLICIES:
        problems["missed"] = "must be one of latest, skip, all"
    return schedule, problems


# ------------------------------------------------------------------------------ fire times


def _exists(naive: datetime, tz: ZoneInfo) -> bool:
    aware = naive.replace(tzinfo=tz, fold=0)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None, fold=0) == naive


def wall_to_utc(naive: datetime, tz: ZoneInfo) -> datetime:
    """A local wall-clock time on the UTC timeline: the first occurrence of an ambiguous
    time; for a time that does not exist (a daylight-saving gap), the next valid minute."""
    naive = naive.replace(fold=0)
    probe = naive
    for _ in range(MAX_GAP_MINUTES):
        if _exists(probe, tz):
            return probe.replace(tzinfo=tz).astimezone(UTC)
        probe += timedelta(minutes=1)
    raise ValueError(f"{naive} has no valid time in {tz} within two days")


def fire_times(
    cron: str, timezone: str, after: datetime, until: datetime | None = None
) -> Iterator[datetime]:
    """The fire times strictly after ``after`` (and at or before ``until``), in UTC.

    Walks local wall-clock times matching the expression and places each on the UTC
    timeline (``wall_to_utc``); a time that lands on or before the previous one (two gap
    times mapped to the same minute, or an ambiguous time's first occurrence already
    passed) does not fire again.
    """
    tz = ZoneInfo(timezone)
    start = after.astimezone(tz).replace(tzinfo=None, fold=0)
    walker = croniter(cron, start)
    last = after
    while True:
        instant = wall_to_utc(walker.get_next(datetime), tz)
        if instant <= last:
            continue
        if until is not None and instant > until:
            return
        yield instant
        last = instant


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    return next(fire_times(cron, timezone, after))


def next_fires(cron: str, timezone: str, after: datetime, count: int = 5) -> list[datetime]:
    try:
        return list(islice(fire_times(cron, timezone, after), count))
    except (CroniterError, ValueError):
        return []


def previous_fire(cron: str, timezone: str, before: datetime) -> datetime | None:
    """The latest fire time at or before ``before``."""
    tz = ZoneInfo(timezone)
    start = before.astimezone(tz).replace(tzinfo=None, fold=0) + timedelta(seconds=1)
    walker = croniter(cron, start)
    for _ in range(10_000):
        instant = wall_to_utc(walker.get_prev(datetime), tz)
        if instant <= before:
            return instant
    return None


def is_fire_time(cron: str, timezone: str, instant: datetime) -> bool:
    try:
        return next_fire(cron, timezone, instant - timedelta(seconds=1)) == instant
    except (CroniterError, ValueError, StopIteration):
        return False


# ------------------------------------------------------------------------------- in words


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _days_phrase(dom: str, month: str, dow: str) -> str | None:
    if dom == "*" and month == "*" and dow == "*":
        return "every day"
    if dom == "*" and month == "*":
        days = sorted(field_values(dow, 4))
        if days == [1, 2, 3, 4, 5]:
            return "on weekdays (Monday to Friday)"
        if days == [0, 6]:
            return "on Saturdays and Sundays"
        return "every " + _join([DAY_WORDS[d] for d in days])
    if dow == "*" and all(_number(p) is not None for p in dom.split(",")):
        days = sorted(field_values(dom, 2))
        label = "day" if len(days) == 1 else "days"
        listed = _join([str(d) for d in days])
        if month == "*":
            return f"on {label} {listed} of every month"
        if _number(month) is not None or month.lower() in MONTH_NAMES:
            return f"every year on {listed} {MONTH_WORDS[_field_value(month, 3) - 1]}"
    return None


def _describe(fields: list[str]) -> str | None:
    minute, hour, dom, month, dow = fields
    days = _days_phrase(dom, month, dow)
    if days is None:
        return None
    every_day = days == "every day"
    m = _number(minute)
    hours = [_number(h) for h in hour.split(",")]
    if m is not None and hours and all(h is not None for h in hours):
        times = _join([f"{h:02d}:{m:02d}" for h in sorted(field_values(hour, 1))])
        return f"{days} at {times}"
    suffix = "" if every_day else f", {days}"
    if m is not None and hour == "*":
        return f"every hour at minute {m}{suffix}"
    if m is not None and hour.startswith("*/") and _number(hour[2:]):
        return f"every {int(hour[2:])} hours at minute {m}{suffix}"
    if minute == "*" and hour == "*":
        return f"every minute{suffix}"
    if minute.startswith("*/") and _number(minute[2:]) and hour == "*":
        return f"every {int(minute[2:])} minutes{suffix}"
    return None


def explain(cron: str, timezone: str) -> str:
    """The expression in words for common shapes ("every day at 09:00, Asia/Seoul"), else the
    expression itself."""
    try:
        words = _describe(cron.split()) if len(cron.split()) == 5 else None
    except CronError:
        words = None
    return f"{words}, {timezone}" if words else f"at times matching “{cron}”, {timezone}"


# --------------------------------------------------------------------- the domain: editing


def schedule_definition(schedule: Schedule) -> dict[str, Any]:
    """A schedule in the definition format (SPEC §7)."""
    data: dict[str, Any] = {
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "input": schedule.input_code if schedule.input_code is not None else schedule.input,
        "enabled": schedule.enabled,
    }
    if schedule.missed != DEFAULT_MISSED:
        data["missed"] = schedule.missed
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
    from .queueing import get_redis

    try:
        get_redis().set(DIRTY_KEY, "1")
    except Exception as exc:  # Redis down: the periodic reconcile catches up
        log.warning("could not signal the scheduler (%s)", exc)


def _validated(raw: dict[str, Any]) -> dict[str, Any]:
    data, problems = normalise_schedule(raw)
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


def create_schedule(workflow: Workflow, raw: dict[str, Any]) -> Schedule:
    data = _validated(raw)
    workflow_id = workflow.id
    write_transaction()
    row = Schedule(workflow_id=workflow_id, cron="", timezone="UTC", enabled=False)
    _apply(row, data)
    db.session.add(row)
    _commit_or_duplicate(data["name"])
    return row


def update_schedule(schedule: Schedule, raw: dict[str, Any]) -> Schedule:
    data = _validated(raw)
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


# ----------------------------------------------------------------- the domain: registering


@dataclass(frozen=True)
class Active:
    """An enabled schedule of a workflow with a published version, as the scheduler sees it."""

    id: int
    name: str
    cron: str
    timezone: str
    missed: str
    watermark: datetime
    next_fire_at: datetime


def active_schedules(now: datetime) -> dict[int, Active]:
    """Every schedule that should fire, with its next fire time; records that next fire time
    (and, for a schedule that has just become active, a fresh watermark) on the row."""
    published = exists().where(
        WorkflowVersion.workflow_id == Schedule.workflow_id, WorkflowVersion.deleted_at.is_(None)
    )
    rows = db.session.execute(
        select(
            Schedule.id,
            Schedule.name,
            Schedule.cron,
            Schedule.timezone,
            Schedule.missed,
            Schedule.enabled,
            Schedule.last_fire_at,
            Schedule.next_fire_at,
            published.label("published"),
        )
    ).all()
    db.session.commit()
    active: dict[int, Active] = {}
    changes: list[dict[str, Any]] = []
    for row in rows:
        if not (row.enabled and row.published):
            if row.next_fire_at is not None:
                changes.append({"id": row.id, "next_fire_at": None})
            continue
        try:
            upcoming = next_fire(row.cron, row.timezone, now)
        except (CroniterError, ValueError, StopIteration):
            log.warning("schedule %s (%s) has no next fire time", row.id, row.cron)
            continue
        watermark = row.last_fire_at
        change: dict[str, Any] = {}
        if row.next_fire_at is None:  # just became active: nothing before now is missed
            watermark = max(now, watermark) if watermark else now
            change["last_fire_at"] = watermark
        if row.next_fire_at != upcoming:
            change["next_fire_at"] = upcoming
        if change:
            changes.append({"id": row.id, **change})
        active[row.id] = Active(
            row.id, row.name, row.cron, row.timezone, row.missed, watermark or now, upcoming
        )
    if changes:
        write_transaction()
        for change in changes:
            db.session.execute(
                update(Schedule)
                .where(Schedule.id == change.pop("id"))
                .values(**change)
                .execution_options(synchronize_session=False)
            )
        db.session.commit()
    return active


def catch_up(
    schedule: Active,
    now: datetime,
    pending: Callable[[datetime], bool],
    start: Callable[[datetime, str], None],
) -> None:
    """Settle the fire times between the schedule's watermark and ``now``.

    A fire time with a fire row is done; one whose job is still waiting or executing
    (``pending``) is left to it; any other was missed (the scheduler or Redis was down) and
    the schedule's policy decides: ``latest`` starts one run for the latest missed fire,
    ``all`` one per missed fire, ``skip`` none; each is recorded with a note. ``start``
    enqueues the fire job of a missed fire, which records it as ``missed``.
    """
    window = list(
        islice(
            fire_times(schedule.cron, schedule.timezone, schedule.watermark, now),
            CATCH_UP_BATCH + 1,
        )
    )
    if not window:
        return
    capped = len(window) > CATCH_UP_BATCH
    window = window[:CATCH_UP_BATCH]
    done = set(
        db.session.scalars(
            select(ScheduleFire.fire_at).where(
                ScheduleFire.schedule_id == schedule.id,
                ScheduleFire.fire_at >= window[0],
                ScheduleFire.fire_at <= window[-1],
            )
        )
    )
    db.session.commit()
    waiting = {f for f in window if f not in done and pending(f)}
    missed = [f for f in window if f not in done and f not in waiting]
    if capped and schedule.missed != "all":
        # A long outage: jump to the latest fire instead of walking every one.
        latest = previous_fire(schedule.cron, schedule.timezone, now)
        if latest is not None and latest > window[-1]:
            missed.append(latest)
            window.append(latest)
    if not missed:
        _advance(schedule, window, waiting)
        return
    earlier = len(missed) - 1
    since = f" since {missed[0]:%Y-%m-%d %H:%M} UTC" if earlier else ""
    more = "more than " if capped and schedule.missed != "all" else ""
    started: set[datetime] = set()
    if schedule.missed == "all":
        for fire_at in missed:
            start(fire_at, "Started late: missed while no scheduler was running (policy: all).")
            started.add(fire_at)
    elif schedule.missed == "latest":
        note = "Started late: missed while no scheduler was running"
        if earlier:
            note += f"; {more}{earlier} earlier missed fire(s){since} were not started"
        start(missed[-1], note + " (policy: latest).")
        started.add(missed[-1])
    else:
        count = f"{more}{len(missed)} missed fire(s){since}" if earlier else "missed"
        _record_skipped(
            schedule.id,
            missed[-1],
            f"Not started: {count} while no scheduler was running (policy: skip).",
        )
    _advance(schedule, window, waiting | started)


def _record_skipped(schedule_id: int, fire_at: datetime, note: str) -> None:
    write_transaction()
    db.session.add(
        ScheduleFire(schedule_id=schedule_id, fire_at=fire_at, status="skipped", note=note)
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()


def _advance(schedule: Active, window: list[datetime], unsettled: set[datetime]) -> None:
    """Move the watermark to the last fire time before the first unsettled one."""
    mark = None
    for fire_at in window:
        if fire_at in unsettled:
            mark = fire_at - timedelta(seconds=1)
            break
        mark = fire_at
    if mark is None or mark <= schedule.watermark:
        return
    write_transaction()
    db.session.execute(
        update(Schedule)
        .where(
            Schedule.id == schedule.id,
            or_(Schedule.last_fire_at.is_(None), Schedule.last_fire_at < mark),
        )
        .values(last_fire_at=mark)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


# -------------------------------------------------------------------- the domain: firing


def fire(
    schedule_id: int,
    fire_at: datetime,
    evaluate: Callable[[Schedule, datetime], Any],
    *,
    status: str = "started",
    note: str | None = None,
) -> ScheduleFire | None:
    """Start the run of one fire time: at most once, however often this is called.

    ``evaluate(schedule, now)`` computes the input (a worker evaluates an input snippet;
    never the web process). The fire row and the run are inserted in one transaction; the
    fire row's unique key makes a second attempt (another scheduler, a retried job) roll
    back and return the first. A failing snippet or an input the schema refuses is recorded
    as a ``failed`` fire with its error. Returns None when the schedule no longer fires then
    (deleted, paused, edited, or its workflow has no published version).
    """
    from .queueing import enqueue_run
    from .runs import new_run

    schedule = db.session.get(Schedule, schedule_id)
    if schedule is None or not schedule.enabled:
        db.session.commit()
        return None
    version = schedule.workflow.latest_version
    if version is None or not is_fire_time(schedule.cron, schedule.timezone, fire_at):
        db.session.commit()
        return None
    existing = _fire_row(schedule_id, fire_at)
    if existing is not None:
        return existing
    run: Run | None = None
    error = None
    try:
        value = evaluate(schedule, fire_at.astimezone(ZoneInfo(schedule.timezone)))
        run = new_run(version, value, trigger=f"schedule:{schedule.name}")
    except ValidationFailed as exc:
        error = exc.message + "".join(f"\n{d['path']}: {d['message']}" for d in exc.details)
    except Exception as exc:
        error = getattr(exc, "schedule_traceback", None) or f"{type(exc).__name__}: {exc}"
    row = ScheduleFire(
        schedule_id=schedule_id,
        fire_at=fire_at,
        status="failed" if run is None else status,
        run_id=run.id if run is not None else None,
        error=error,
        note=note,
    )
    write_transaction()
    if run is not None:
        db.session.add(run)
        db.session.flush()
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return _fire_row(schedule_id, fire_at)
    if run is not None:
        enqueue_run(run.id)
    return row


def _fire_row(schedule_id: int, fire_at: datetime) -> ScheduleFire | None:
    row = db.session.scalar(
        select(ScheduleFire).where(
            ScheduleFire.schedule_id == schedule_id, ScheduleFire.fire_at == fire_at
        )
    )
    db.session.commit()
    return row


def recent_fires(schedule_id: int, limit: int = 10) -> list[ScheduleFire]:
    return list(
        db.session.scalars(
            select(ScheduleFire)
            .where(ScheduleFire.schedule_id == schedule_id)
            .order_by(ScheduleFire.fire_at.desc())
            .limit(limit)
        )
    )


def problem_fires(schedule_id: int, limit: int = 5) -> list[ScheduleFire]:
    """The latest missed, skipped and failed fires (what a user should look at)."""
    return list(
        db.session.scalars(
            select(ScheduleFire)
            .where(
                ScheduleFire.schedule_id == schedule_id,
                ScheduleFire.status.in_(("missed", "skipped", "failed")),
            )
            .order_by(ScheduleFire.fire_at.desc())
            .limit(limit)
        )
    )
