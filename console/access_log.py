"""Secrets out of the logs: a resume or cancel link's token and a webhook's secret are the
last segment of their paths (``/flow/<action>/<token>``, ``/hooks/<workflow>/<secret>``), and
anyone who reads a log line with one can act on the run or start runs. Every log line that
can carry a request's URL (gunicorn's access and error logs, Flask's "Exception on …") shows
``[redacted]`` in their place.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote

from gunicorn.glogging import Logger

REDACTED = "[redacted]"
# Repeated slashes and any case: the router redirects those to the real path, and the
# request line still carries the secret.
SECRET_SEGMENT = re.compile(r"(/+(?:flow|hooks)/+[^/?#\s\"]+/+)[^/?#\s\"]+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the secret segment of every link or webhook path in it replaced."""
    if not isinstance(text, str) or "/" not in text:
        return text
    redacted = SECRET_SEGMENT.sub(r"\1" + REDACTED, text)
    if redacted == text and "%" in text:
        # A percent-encoded path (``/fl%6Fw/resume/…``) reaches the same route once decoded.
        decoded = unquote(text)
        if SECRET_SEGMENT.search(decoded):
            return SECRET_SEGMENT.sub(r"\1" + REDACTED, decoded)
    return redacted


class RedactingFilter(logging.Filter):
    """Redacts a record's message (formatted with its arguments) before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def add_filter(logger: logging.Logger) -> None:
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())


class RedactingLogger(Logger):
    """gunicorn's logger with link tokens and webhook secrets out of the access log (the
    request line, path, referrer and every header or environ atom) and the error log."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        add_filter(self.error_log)

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        return {key: redact(value) for key, value in atoms.items()}
