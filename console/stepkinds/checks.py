"""The value checks of step-kind settings.

A check takes a config value (from JSON or from a form) and returns the normalised value or
raises ValueError with a message for the user. The ``parse_*`` helpers turn a checked value
into what the generated code uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .references import REFERENCE_RE, reference_problem

Check = Callable[[Any], Any]
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
UNITS = {
    "": 1,
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
EMAIL_RE = re.compile(r"^[^@\s,;]+@[^@\s,;]+$")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
STATUS_ITEM_RE = re.compile(r"^[1-5]([0-9][0-9]|xx)$")


def _text(value: Any, *, required: bool, max_length: int = 10_000) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError("must be text")
    if required and not value.strip():
        raise ValueError("is required")
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters")
    problem = reference_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def required_text(max_length: int = 10_000) -> Check:
    return lambda value: _text(value, required=True, max_length=max_length)


def optional_text(max_length: int = 100_000) -> Check:
    return lambda value: _text(value, required=False, max_length=max_length)


def check_duration(minimum: float, maximum: float) -> Check:
    """Seconds as a number, or text such as ``90``, ``30s``, ``10 minutes``, ``2h``, ``7d``."""

    def check(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("must be a duration such as 30s, 10m, 2h or 7d")
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            match = DURATION_RE.match(str(value or ""))
            unit = match.group(2).lower() if match else None
            if match is None or unit not in UNITS:
                raise ValueError("must be a duration such as 30s, 10m, 2h or 7d")
            seconds = float(match.group(1)) * UNITS[unit]
        if not minimum <= seconds <= maximum:
            raise ValueError(f"must be between {describe(minimum)} and {describe(maximum)}")
        return seconds

    return check


def describe(seconds: float) -> str:
    """``604800`` → ``7 days``: the largest unit that divides it."""
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


def check_integer(minimum: int, maximum: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        return value

    return check


def check_recipients(value: Any) -> str:
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    text = _text(value, required=True, max_length=2000)
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        if REFERENCE_RE.fullmatch(part):
            continue
        if not EMAIL_RE.match(part):
            raise ValueError(f"{part!r} is not an email address (name@example.com)")
    return text


def check_url(value: Any) -> str:
    text = _text(value, required=True, max_length=2000).strip()
    if text.startswith("{{"):
        return text  # the URL comes from the run; checked when the step runs
    parts = urlsplit(REFERENCE_RE.sub("x", text))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL (or a {{ reference }})")
    return text


def check_method(value: Any) -> str:
    method = str(value or "").upper()
    if method not in METHODS:
        raise ValueError(f"must be one of {', '.join(METHODS)}")
    return method


def parse_headers(value: Any) -> dict[str, str]:
    """A JSON object, or ``Key: value`` lines."""
    if value is None or value == "":
        return {}
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"is not a JSON object: {exc}") from None
    if isinstance(value, dict):
        if not all(isinstance(v, str | int | float) for v in value.values()):
            raise ValueError("header values must be text")
        headers = {str(k): str(v) for k, v in value.items()}
    elif isinstance(value, str):
        headers = {}
        for number, line in enumerate(value.splitlines(), 1):
            if not line.strip():
                continue
            name, colon, content = line.partition(":")
            if not colon or not name.strip():
                raise ValueError(f"line {number}: write a JSON object or Key: value lines")
            headers[name.strip()] = content.strip()
    else:
        raise ValueError("must be a JSON object or Key: value lines")
    for name in headers:
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
            raise ValueError(f"{name!r} is not a header name")
    problem = reference_problem(headers)
    if problem:
        raise ValueError(problem)
    return headers


def check_headers(value: Any) -> Any:
    parse_headers(value)
    return value if value is not None else ""


def parse_body(value: Any) -> tuple[str, Any]:
    """``("json", value)`` for JSON (or a JSON value given directly), ``("text", s)`` otherwise,
    ``("none", None)`` when empty."""
    if value is None or value == "":
        return "none", None
    if not isinstance(value, str):
        return "json", value
    stripped = value.strip()
    if stripped[:1] in ("{", "["):
        try:
            return "json", json.loads(stripped)
        except ValueError as exc:
            raise ValueError(
                f"looks like JSON but is not valid: {exc} (a {{{{ reference }}}} inside JSON "
                'goes in quotes: "{{ input.id }}")'
            ) from None
    return "text", value


def check_body(value: Any) -> Any:
    _, parsed = parse_body(value)
    if isinstance(value, str):
        _text(value, required=False, max_length=100_000)
    problem = reference_problem(parsed)
    if problem:
        raise ValueError(problem)
    return value if value is not None else ""


def parse_statuses(value: Any) -> list[str]:
    """``2xx`` (the default), ``any``, or codes and classes: ``200, 404, 3xx``."""
    text = str(value if value is not None else "").strip().lower() or "2xx"
    if text == "any":
        return []
    items = [p.strip() for p in text.split(",") if p.strip()]
    for item in items:
        if not STATUS_ITEM_RE.match(item):
            raise ValueError(f"{item!r}: give status codes or classes (200, 404, 2xx) or any")
    return items


def check_statuses(value: Any) -> str:
    parse_statuses(value)
    return str(value if value is not None else "").strip() or "2xx"


def check_condition(value: Any) -> str:
    text = _text(value, required=True, max_length=2000).strip()
    if "\n" in text:
        raise ValueError("must be one expression on one line")
    try:
        compile(text, "<condition>", "eval")
    except SyntaxError as exc:
        raise ValueError(f"is not a Python expression: {exc.msg}") from None
    return text


def check_optional_url(value: Any) -> str:
    if value is None or not str(value).strip():
        return ""
    return check_url(value)
