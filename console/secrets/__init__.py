"""Secrets (docs/secrets.md): credentials for steps, encrypted at rest, read by step code as
``ctx.secrets`` and by built-in kinds as ``{{ secrets.NAME }}``, never shown again.

- ``vault``: the key, encryption, and sealed task results (``shown_task_result``);
- ``masking``: ``Masker``, ``[secret NAME]`` in place of a value;
- ``store``: create, replace, delete, list, the values for a step execution, rotation;
- ``usage``: which workflows' latest versions use a secret;
- ``routes``/``forms``: the Secrets page (its blueprint ``routes.bp``);
- ``cli``: ``flask secrets``.
"""

from .masking import NO_MASK, Masker
from .store import (
    MAX_VALUE_BYTES,
    NAME_RE,
    current_masker,
    delete_secret,
    describe,
    get_secret,
    list_secrets,
    rotate,
    secret_names,
    set_secret,
    step_secrets,
)
from .usage import definition_secret_names, step_secret_names, used_by
from .vault import opened_task_result, shown_task_result, stored_task_result

__all__ = [
    "MAX_VALUE_BYTES",
    "NAME_RE",
    "NO_MASK",
    "Masker",
    "current_masker",
    "definition_secret_names",
    "delete_secret",
    "describe",
    "get_secret",
    "list_secrets",
    "opened_task_result",
    "rotate",
    "secret_names",
    "set_secret",
    "shown_task_result",
    "step_secret_names",
    "step_secrets",
    "stored_task_result",
    "used_by",
]
