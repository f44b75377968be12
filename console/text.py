"""Checks on text that the console writes to its database from what users send.

PostgreSQL refuses NUL in text and strings longer than their column, where SQLite keeps
both: refusing them before writing gives the same answer (422 with the field's path) on
both databases instead of a 500 on one.
"""

from __future__ import annotations

from typing import Any

from flask import abort, request

NUL = "\x00"
NUL_MESSAGE = "must not contain the NUL character"


def storable(text: str | None) -> str | None:
    """Text as a text column of either database keeps it: a NUL that a step printed, raised
    or emailed is kept as the four characters ``\\x00`` (PostgreSQL refuses NUL in text,
    and a run whose checkpoint cannot be written would be replayed for ever)."""
    return text.replace(NUL, "\\x00") if text and NUL in text else text


def text_problem(value: str, max_chars: int) -> str | None:
    """Why ``value`` cannot be stored in a field of ``max_chars`` characters, or None."""
    if len(value) > max_chars:
        return f"at most {max_chars} characters"
    if NUL in value:
        return NUL_MESSAGE
    return None


def nul_problems(value: Any, path: str = "") -> list[dict[str, str]]:
    """One problem per string (key or value) holding NUL anywhere in ``value``; iterative,
    so any depth of JSON that the parser let in is walked without recursion."""
    found = []
    pending: list[tuple[str, Any]] = [(path, value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, str):
            if NUL in item:
                found.append({"path": where or "/", "message": NUL_MESSAGE})
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and NUL in key:
                    found.append(
                        {"path": where or "/", "message": "a key contains the NUL character"}
                    )
                pending.append((f"{where}/{key}", inner))
        elif isinstance(item, list):
            pending.extend((f"{where}/{i}", inner) for i, inner in enumerate(item))
    return sorted(found, key=lambda p: p["path"])


def refuse_nul_in_request() -> None:
    """Before every request: the path, query and form fields are looked up in or written to
    the database, so NUL in any of them is refused here at once (400) rather than by the
    database. JSON bodies are checked where they are validated."""
    if NUL in request.path or _has_nul(request.args):
        abort(400, "The URL must not contain the NUL character")
    if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return
    if _has_nul(request.form):
        abort(400, "A form field must not contain the NUL character")


def _has_nul(fields: Any) -> bool:
    return any(NUL in key or NUL in value for key, value in fields.items(multi=True))
