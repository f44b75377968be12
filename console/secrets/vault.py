"""Encryption at rest: Fernet (AES-128-CBC with an HMAC-SHA256, from ``cryptography``) under
the secrets key, with ``MultiFernet`` reading what older keys encrypted.

The key is ``SECRETS_KEY``, or else derived from ``SECRET_KEY``; either string goes through
HKDF-SHA256 with this module's own label, so the secrets key is never the key that signs
sessions and links. ``SECRETS_KEY_FALLBACKS`` (and, while ``SECRETS_KEY`` is unset,
``SECRET_KEY_FALLBACKS``) are still read; ``flask secrets rotate`` re-encrypts everything
under the current key so that they can be dropped.

A task result holding a secret's value is kept as returned (a replay must see what the first
execution saw), sealed: ``{SEALED: <token>, "shown": <the masked result>}``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from .masking import Masker

LABEL = b"workflow-console secrets at rest v1"
SEALED = "__secret_sealed__"


class Unreadable(Exception):
    """A stored value that no configured key decrypts."""


def _fernet_key(secret: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL)
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode("utf-8")))


def _split(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [k.strip() for k in str(value or "").split(",") if k.strip()]


def key_strings(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The current key's string first, then those still read."""
    own = str(config.get("SECRETS_KEY") or "").strip()
    keys = [own or str(config["SECRET_KEY"])]
    keys += _split(config.get("SECRETS_KEY_FALLBACKS"))
    if not own:  # a rotated SECRET_KEY still reads what its predecessors encrypted
        keys += _split(config.get("SECRET_KEY_FALLBACKS"))
    return tuple(dict.fromkeys(keys))


@lru_cache(maxsize=8)
def _cipher(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_fernet_key(k)) for k in keys])


def cipher() -> MultiFernet:
    return _cipher(key_strings(current_app.config))


def encrypt(value: str) -> str:
    return cipher().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return cipher().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise Unreadable("no configured key decrypts it (SECRETS_KEY, SECRETS_KEY_FALLBACKS)")


def reencrypt(token: str) -> str:
    """The token under the current key (``MultiFernet.rotate``)."""
    try:
        return cipher().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise Unreadable("no configured key decrypts it (SECRETS_KEY, SECRETS_KEY_FALLBACKS)")


# ------------------------------------------------------------------------ task results
def is_sealed(stored: Any) -> bool:
    return isinstance(stored, dict) and set(stored) == {SEALED, "shown"}


def stored_task_result(result: Any, secrets: Masker | Mapping[str, str]) -> Any:
    """What the database keeps of a ``ctx.task`` result: itself, or sealed when it holds a
    value of ``secrets`` (name → value, or their ``Masker``)."""
    masker = secrets if isinstance(secrets, Masker) else Masker(secrets)
    if not masker.contains(result):
        return result
    token = encrypt(json.dumps(result, ensure_ascii=False))
    return {SEALED: token, "shown": masker.value(result)}


def opened_task_result(stored: Any) -> Any:
    """The result as the step returned it, for a replay."""
    if not is_sealed(stored):
        return stored
    return json.loads(decrypt(stored[SEALED]))


def shown_task_result(stored: Any) -> Any:
    """The result as pages, answers, exports and journals show it: masked."""
    return stored["shown"] if is_sealed(stored) else stored
