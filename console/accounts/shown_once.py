"""A secret shown once, across the redirect that follows the POST which made it.

A page that answered the POST itself would offer to send the form again on reload, creating a
second token or resetting the password again. So the POST splits the secret and redirects: a
random one-time pad goes into the session (the signed cookie) and the secret XOR the pad into
Redis for a few minutes. The GET that follows joins the halves and forgets both, so a reload
shows the page without the secret. Neither half alone reveals anything. When Redis cannot be
reached, the POST's own answer shows the secret, as it did before.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import redis
from flask import session

from ..queueing import get_redis

log = logging.getLogger(__name__)

SESSION_KEY = "shown_once"
SECONDS = 300


def _key(ident: str) -> str:
    return f"console:shown-once:{ident}"


def _xor(data: bytes, pad: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pad, strict=True))


def keep(kind: str, value: str, about: dict[str, str] | None = None) -> bool:
    """Hold ``value`` (and what it is ``about``) for the next page of this session; False
    when it cannot be held."""
    data = value.encode()
    pad = secrets.token_bytes(len(data))
    ident = secrets.token_urlsafe(16)
    try:
        get_redis().set(_key(ident), _xor(data, pad), ex=SECONDS)
    except (redis.RedisError, OSError) as exc:
        log.warning("a secret could not be held for its redirect (%s)", type(exc).__name__)
        return False
    session[SESSION_KEY] = {"id": ident, "pad": pad.hex(), "kind": kind, "about": about or {}}
    return True


def take(kind: str) -> dict[str, Any] | None:
    """The secret held for this session's page of ``kind``, once: ``{"value": …, **about}``."""
    held = session.get(SESSION_KEY)
    if not isinstance(held, dict) or held.get("kind") != kind:
        return None
    session.pop(SESSION_KEY, None)
    try:
        pipe = get_redis().pipeline()  # MULTI/EXEC: read and forget in one step
        pipe.get(_key(held["id"]))
        pipe.delete(_key(held["id"]))
        cipher, _ = pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.warning("a held secret could not be read (%s)", type(exc).__name__)
        return None
    pad = bytes.fromhex(held["pad"])
    if cipher is None or len(cipher) != len(pad):
        return None  # expired: the page says nothing rather than something wrong
    return {"value": _xor(cipher, pad).decode(), **held["about"]}
