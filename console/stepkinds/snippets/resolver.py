"""The resolver of ``{{ references }}``, added to generated code whose settings hold one."""

import json
import re

# -------------------- snippet: the code below is copied into steps


# {{ input.x }}, {{ steps.<step>.output.x }} and {{ secrets.NAME }} in a setting are replaced
# by values of this run.
REFERENCE = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def resolve(ctx, value):
    """The setting with its {{ references }} replaced (a lone reference keeps its type)."""
    if isinstance(value, dict):
        return {key: resolve(ctx, item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(ctx, item) for item in value]
    whole = REFERENCE.fullmatch(value.strip()) if isinstance(value, str) else None
    if whole:
        return lookup(ctx, whole.group(1))
    if not isinstance(value, str):
        return value

    def as_text(match):
        found = lookup(ctx, match.group(1))
        return found if isinstance(found, str) else json.dumps(found)

    return REFERENCE.sub(as_text, value)


def lookup(ctx, path):
    """The value of "input.a.b", "steps.<step>.output.a.b" or "secrets.NAME" in this run."""
    root, *keys = path.split(".")
    if root == "secrets":
        return ctx.secrets[keys[0]]
    if root == "input":
        value = ctx.input
    else:
        value = getattr(ctx.steps[keys[0]], keys[1])
        keys = keys[2:]
    for key in keys:
        try:
            value = value[int(key)] if isinstance(value, list) else value[key]
        except (KeyError, IndexError, TypeError, ValueError):
            raise LookupError(f"{{{{ {path} }}}}: there is no {key!r} in this run") from None
    return value
