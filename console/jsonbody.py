"""Request bodies and uploaded files: read them within a size limit and parse them as JSON.

Every body or file the console parses as JSON goes through ``parse_json``: it refuses
nesting deeper than ``MAX_DEPTH`` (the parser recurses per level, so 100,000 levels would
raise RecursionError) and the non-standard constants ``NaN``, ``Infinity`` and ``-Infinity``
(a stored NaN makes the run's API answer invalid JSON). ``ConsoleRequest`` makes a body sent
without a Content-Length (chunked) refused over ``MAX_CONTENT_LENGTH`` instead of cut there.
"""

from __future__ import annotations

import io
import json
import re
from typing import IO, Any

from flask import Request, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property

from .errors import ConsoleError

MAX_DEPTH = 64
# A JSON string, escapes included; what is left outside strings is structure and scalars.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class JSONRefused(ValueError):
    """Text that is JSON by syntax but that the console does not take (too deep, NaN)."""


def _refuse_constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not allowed in JSON (nor Infinity or -Infinity)")


def nesting_depth(text: str, stop_after: int | None = None) -> int:
    """How deeply arrays and objects nest in ``text``, counted without recursion; the count
    stops once it passes ``stop_after``."""
    level = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            level += 1
            if level > deepest:
                deepest = level
                if stop_after is not None and deepest > stop_after:
                    break
        else:
            level -= 1
    return deepest


def parse_json(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse standard JSON nested at most ``max_depth`` levels.

    Raises ``json.JSONDecodeError`` for bad syntax and ``JSONRefused`` for deep nesting or
    a non-standard constant (both are ``ValueError``)."""
    text = raw.decode(json.detect_encoding(raw), "surrogatepass") if isinstance(raw, bytes) else raw
    if nesting_depth(text, stop_after=max_depth) > max_depth:
        raise JSONRefused(f"nested deeper than {max_depth} levels")
    return json.loads(text, parse_constant=_refuse_constant)


def read_body(limit: int) -> bytes:
    """The request's raw body, refused with 413 when it is over ``limit`` bytes, whether or
    not it came with a Content-Length."""
    if (request.content_length or 0) > limit:
        raise ConsoleError(
            f"The request body is {request.content_length} bytes; the limit is {limit}",
            status=413,
        )
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:  # a body without a length, over MAX_CONTENT_LENGTH
        raw = None
    if raw is None or len(raw) > limit:
        raise ConsoleError(f"The request body is over the limit of {limit} bytes", status=413)
    return raw


def body_json(raw: bytes) -> Any:
    """``raw`` parsed by ``parse_json``; a 400 that says why when it is not JSON we take."""
    try:
        return parse_json(raw)
    except UnicodeDecodeError:
        raise ConsoleError("The request body must be JSON: it is not UTF-8 text") from None
    except ValueError as exc:
        raise ConsoleError(f"The request body must be JSON: {exc}") from None


def _read_at_most(stream: IO[bytes], limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(64 * 1024, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge()
    return b"".join(chunks)


# Endpoints that take bodies larger than MAX_CONTENT_LENGTH, and the setting of their limit
# (a multipart upload's framing is allowed on top; the view checks the file itself).
LARGE_BODIES = {"api.recover_journal": "JOURNAL_MAX_BYTES", "tasks.recover": "JOURNAL_MAX_BYTES"}
UPLOAD_FRAMING = 64 * 1024


class ConsoleRequest(Request):
    """Werkzeug stops reading a body without a Content-Length at ``MAX_CONTENT_LENGTH`` and
    hands on what it read, so an oversized chunked body was cut and the rest ignored. Read
    such a body here up to one byte over the limit and refuse it with 413 when it is over.
    The endpoints in ``LARGE_BODIES`` have their own limit."""

    @property
    def max_content_length(self) -> int | None:  # type: ignore[override]
        setting = LARGE_BODIES.get(self.endpoint or "")
        if setting is not None and current_app:
            return int(current_app.config[setting]) + UPLOAD_FRAMING
        return super().max_content_length

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        # Only a server that terminates the stream (gunicorn; werkzeug for chunked bodies)
        # sets wsgi.input_terminated; without it werkzeug reads no length-less body at all.
        terminated = "wsgi.input_terminated" in self.environ
        if self.content_length is None and limit is not None and terminated:
            return io.BytesIO(_read_at_most(self.environ["wsgi.input"], limit))
        return super().stream
