"""Errors and log fields as a person reads them. A failed step's error: the one-line error
first, then the frames of the step's own code, the full traceback one click further.

A step's traceback already starts at the step's frames (``workers.runtime.step_traceback``),
but it still passes through the worker (``ctx.task`` in ``workers/runtime.py``) and through the
helpers that built-in kinds generate (``resolve``, ``send_request``…): those frames are not
code the person wrote, so they are folded away here, never dropped from what is stored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

from markupsafe import Markup

from . import stepkinds

TRACEBACK = "Traceback (most recent call last):"
CARETS_RE = re.compile(r"^\s*[~^]+\s*$")  # Python 3.11+ marks the failing expression
FRAME_RE = re.compile(r'^  File "(?P<file>[^"]+)", line \d+, in (?P<function>\S+)$')


@dataclass
class StepError:
    headline: str  # the exception's first line: what went wrong
    frames: str  # the step's own frames ("" when none is the person's)
    full: str | None  # the whole text, when it is a traceback


@cache
def _helpers() -> frozenset[str]:
    return stepkinds.helper_functions()


def _is_own(frame: list[str]) -> bool:
    match = FRAME_RE.match(frame[0])
    return bool(
        match and match["file"].startswith("<step ") and match["function"] not in _helpers()
    )


def step_error(text: str | None) -> StepError:
    """Split an error into what the run page shows first and what it folds away."""
    text = (text or "").rstrip()
    if TRACEBACK not in text:
        return StepError(headline=text, frames="", full=None)
    # The last traceback of a chain ends in the exception that failed the step.
    lines = text.rpartition(TRACEBACK)[2].splitlines()[1:]
    frames: list[list[str]] = []
    rest = len(lines)
    for index, line in enumerate(lines):
        if FRAME_RE.match(line):
            frames.append([line])
        elif line.startswith("    ") and frames:
            frames[-1].append(line)
        else:
            rest = index
            break
    said = [line for line in lines[rest:] if line.strip()] or text.splitlines()[-1:]
    # One line: the rest of a long message (an HTML error page…) is in the full traceback.
    headline = said[0].strip() + (" …" if len(said) > 1 else "")
    own = [
        "\n".join(line for line in frame if not CARETS_RE.match(line))
        for frame in frames
        if _is_own(frame)
    ]
    return StepError(headline=headline, frames="\n".join(own), full=text)


def json_text(value: object, indent: int | None = None) -> Markup:
    """JSON as written, for an element's text (never an attribute): ``'``, ``"``, ``<`` and
    accents themselves, not the ``\\u0027`` escapes of Jinja's ``tojson`` (made for
    ``<script>``). ``&``, ``<`` and ``>`` are escaped as HTML, which is all text needs."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    return Markup(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
