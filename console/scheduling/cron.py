"""Cron expressions in IANA timezones, without the database: their validation, their fire
times and their meaning in words.

- validation: 5 fields (minute hour day-of-month month day-of-week) of numbers, names (JAN,
  MON), ``*``, ranges, lists and steps, which croniter must accept; a problem is named by its
  field ("minute: 61 is out of range 0-59");
- fire times, computed on the wall clock of the timezone. croniter walks local wall-clock
  times; each is then placed on the UTC timeline: a local time that does not exist that day
  (the spring-forward gap) fires once at the next valid minute, and an ambiguous one (the
  repeated hour in autumn) fires once, at its first occurrence;
- the English explanation, from cron-descriptor.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import ExpressionDescriptor, Options
from croniter import croniter
from croniter.croniter import CroniterError

from ..timeutil import utcnow

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


# ------------------------------------------------------------------------------ validation


def _token_problem(token: str, index: int) -> str | None:
    """Why one number or name of a field is wrong, or None. (croniter also reads L, W, #, ?
    and H tokens, which the definition format does not have.)"""
    name, low, high = FIELDS[index]
    names = MONTH_NAMES if index == 3 else DAY_NAMES if index == 4 else {}
    if token.lower() in names:
        return None
    if not token.isdigit():
        hint = " or a name like JAN" if index == 3 else " or a name like MON" if index == 4 else ""
        return f"{name}: {token!r} is not a number{hint}"
    if not low <= int(token) <= high:
        return f"{name}: {int(token)} is out of range {low}-{high}"
    return None


def _value(token: str, index: int) -> int:
    names = MONTH_NAMES if index == 3 else DAY_NAMES if index == 4 else {}
    return names[token.lower()] if token.lower() in names else int(token)


def field_problem(text: str, index: int) -> str | None:
    """Why one field of an expression is wrong, or None: each item of the field must be read
    by croniter on its own (the other fields ``*``); the message names what is wrong."""
    name = FIELDS[index][0]
    for part in text.split(","):
        if not part:
            return f"{name}: empty item in {text!r}"
        base, slash, step = part.partition("/")
        if slash and (not step.isdigit() or int(step) == 0):
            return f"{name}: the step {step!r} must be a positive number"
        tokens = [] if base == "*" else base.split("-")
        if len(tokens) > 2 or any(not t for t in tokens):
            return f"{name}: {part!r} is not a number, a range or *"
        for token in tokens:
            problem = _token_problem(token, index)
            if problem:
                return problem
        if len(tokens) == 2 and _value(tokens[0], index) > _value(tokens[1], index):
            return f"{name}: the range {base!r} goes backwards"
        try:
            croniter.expand(" ".join(part if i == index else "*" for i in range(5)))
        except CroniterError:
            return f"{name}: {part!r} is not something the scheduler understands"
    return None


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
    for index, text in enumerate(fields):
        problem = field_problem(text, index)
        if problem:
            return problem
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

EXPLAIN_OPTIONS = Options()
EXPLAIN_OPTIONS.use_24hour_time_format = True
EXPLAIN_OPTIONS.verbose = False


def explain(cron: str, timezone: str) -> str:
    """The expression in words, from cron-descriptor ("At 09:00, Asia/Seoul"); for one it
    cannot read, the expression itself."""
    try:
        words = ExpressionDescriptor(cron, EXPLAIN_OPTIONS).get_description()
    except Exception:  # cron-descriptor's own errors; the expression was checked before
        words = None
    if len(cron.split()) != 5:
        words = None
    return f"{words}, {timezone}" if words else f"at times matching “{cron}”, {timezone}"
