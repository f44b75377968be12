"""The ``{{ reference }}`` syntax of step-kind settings: ``{{ input.email }}``,
``{{ steps.fetch.output.user.id }}`` (also ``resume_data`` / ``timed_out`` of an earlier step)
or ``{{ secrets.API_TOKEN }}``, alone or inside longer text."""

from __future__ import annotations

import re
from typing import Any

REFERENCE_RE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_SEGMENT = r"[^\s{}.]+"
_STEP_NAME = r"[a-z][a-z0-9_]{0,62}"
VALID_REFERENCE_RE = re.compile(
    rf"^(input(\.{_SEGMENT})*"
    rf"|steps\.{_STEP_NAME}\.(output(\.{_SEGMENT})*|resume_data(\.{_SEGMENT})*|timed_out)"
    r"|secrets\.[A-Z][A-Z0-9_]{0,62})$"
)


def references(value: Any) -> list[str]:
    """Every ``{{ reference }}`` in a setting (strings, and strings inside lists and dicts)."""
    if isinstance(value, str):
        return REFERENCE_RE.findall(value)
    if isinstance(value, dict):
        return [r for v in value.values() for r in references(v)]
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    return []


def reference_problem(value: Any) -> str | None:
    for ref in references(value):
        if not VALID_REFERENCE_RE.match(ref):
            return (
                f"{{{{ {ref} }}}} is not a reference: use {{{{ input.<field> }}}} or "
                "{{ steps.<step>.output.<field> }} (or .resume_data, .timed_out) or "
                "{{ secrets.<NAME> }}"
            )
    return None


def step_reference_problems(config: Any, earlier: list[str]) -> list[tuple[str, str]]:
    """(key, message) for each ``{{ steps.<name>... }}`` in a config that names no step before
    this one: a later or unknown step has no output when this step runs."""
    if not isinstance(config, dict):
        return []
    found = []
    for key, value in config.items():
        for ref in references(value):
            parts = ref.split(".")
            if parts[0] == "steps" and len(parts) > 1 and parts[1] not in earlier:
                before = ", ".join(earlier) if earlier else "none, this is the first step"
                message = f"{{{{ {ref} }}}} names no earlier step (steps before this one: {before})"
                found.append((key, message))
                break
    return found


def input_reference_warnings(config: Any, schema: Any) -> dict[str, str]:
    """A warning per setting whose ``{{ input.<field> }}`` names a field the input schema does
    not list. Only a warning: the schema may allow more fields than it lists, and a run given
    the field works; one that lacks it fails with LookupError."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(config, dict) or not isinstance(properties, dict):
        return {}
    listed = ", ".join(sorted(properties)) or "none"
    found = {}
    for key, value in config.items():
        for ref in references(value):
            parts = ref.split(".")
            if parts[0] == "input" and len(parts) > 1 and parts[1] not in properties:
                found[key] = (
                    f"{{{{ {ref} }}}}: the input schema has no field {parts[1]!r} (its fields: "
                    f"{listed}); a run whose input lacks it fails here."
                )
                break
    return found
