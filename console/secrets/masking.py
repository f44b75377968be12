"""Masking: a secret's value (4 characters or longer) wherever it appears in text or JSON is
replaced by ``[secret NAME]``.

Pure functions over the values a step execution was given, so that the engine side of the
step sandbox (``workers.sandbox``) masks everything a step process hands back before any of it
is recorded, and the link handlers mask what a request to a resume link brings in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

MIN_MASKED = 4


def _forms(value: str) -> set[str]:
    """The value as it may appear: itself, and escaped as in ``repr`` (tracebacks) or in
    JSON text (a body that a step logged)."""
    forms = {
        value,
        repr(value)[1:-1],
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    return {form for form in forms if len(form) >= MIN_MASKED}


class Masker:
    """Masks the values of ``secrets`` (name → value); the longest value wins an overlap."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        names: dict[str, str] = {}
        for name, value in sorted(secrets.items()):
            if isinstance(value, str) and len(value) >= MIN_MASKED:
                for form in _forms(value):
                    names.setdefault(form, name)
        self.names = names
        ordered = sorted(names, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self.pattern is not None

    def text(self, text: Any) -> Any:
        """``text`` with every value masked (anything but a string is returned as it is)."""
        if self.pattern is None or not isinstance(text, str) or not text:
            return text
        return self.pattern.sub(lambda m: f"[secret {self.names[m.group(0)]}]", text)

    def value(self, value: Any) -> Any:
        """A JSON value with every string in it (keys too) masked; a new value when anything
        was, walked without recursion so that any depth the JSON parser let in is fine."""
        if self.pattern is None:
            return value
        if not isinstance(value, dict | list):
            return self.text(value)
        root: list[Any] = [None]
        pending: list[tuple[Any, Any, Any]] = [(root, 0, value)]
        while pending:
            parent, slot, item = pending.pop()
            if isinstance(item, dict):
                copy: Any = {}
                for key, inner in item.items():
                    masked_key = self.text(key)
                    copy[masked_key] = None
                    pending.append((copy, masked_key, inner))
            elif isinstance(item, list):
                copy = [None] * len(item)
                pending.extend((copy, i, inner) for i, inner in enumerate(item))
            else:
                copy = self.text(item)
            parent[slot] = copy
        return root[0]

    def contains(self, value: Any) -> bool:
        """Whether ``value`` holds any of the values."""
        if self.pattern is None:
            return False
        if isinstance(value, str):
            return self.pattern.search(value) is not None
        return bool(self.value(value) != value)


NO_MASK = Masker({})
