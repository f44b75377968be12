"""What the page views share: is this an htmx request, where may a form send the browser
next, and a form's errors as one line of text."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import url_for
from flask_wtf import FlaskForm

from .extensions import htmx


def is_htmx() -> bool:
    """An htmx request: its ``HX-Request: true`` header (read by flask-htmx)."""
    return bool(htmx)


def safe_next(target: str | None) -> str:
    if not target:
        return url_for("main.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/"):
        return url_for("main.index")
    return target


def form_errors(form: FlaskForm) -> list[str]:
    """Every message of the form's fields, in field order."""
    return [message for messages in form.errors.values() for message in messages]


def form_error_text(form: FlaskForm) -> str:
    """The form's messages as one line (a flash or a card's message)."""
    return " ".join(form_errors(form))
