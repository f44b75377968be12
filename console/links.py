"""Resume and cancel links (docs/links.md).

A link's token is an HMAC of the waitpoint's random id and the action under the app's secret
key: unguessable, bound to one step execution and one action, and derivable again when a step
is replayed (so a replay hands out the same links). Only its SHA-256 is stored.

After a rotation of ``SECRET_KEY`` the old key goes into ``SECRET_KEY_FALLBACKS``: a link is
found by the hash of its token whatever key made it, and the links of a waitpoint made under an
older key are signed again with that key, so a replay, the API and the console hand out the
links that were emailed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from flask import current_app, has_request_context
from flask_login import current_user
from sqlalchemy import select

ACTIONS = ("resume", "cancel")
# The token of a link wherever it appears (a step logs or returns its links, or writes them
# into an error): ``…/flow/resume/<token>``.
LINK_TOKEN_RE = re.compile(r"(/flow/(?:resume|cancel)/)[A-Za-z0-9_=-]+")
HIDDEN = "[hidden]"


@dataclass(frozen=True)
class Links:
    resume_url: str
    cancel_url: str


def secret_keys() -> list[str]:
    """The key new links and secrets are made with, then the older ones still accepted."""
    fallbacks = current_app.config.get("SECRET_KEY_FALLBACKS") or []
    return [str(current_app.config["SECRET_KEY"]), *(str(k) for k in fallbacks)]


def sign(message: str, key: str | None = None) -> str:
    """An unguessable token for ``message``: its HMAC-SHA256 under ``key`` (the current secret
    key unless given), URL-safe. Links and webhook URLs are made with it."""
    secret = (key if key is not None else secret_keys()[0]).encode()
    mac = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def waitpoint_token(waitpoint_id: str, action: str, key: str | None = None) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown link action {action!r}")
    return sign(f"waitpoint:{waitpoint_id}:{action}", key)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def links_for(waitpoint_id: str) -> Links:
    """The waitpoint's links, signed with the key it was made under: with older keys in
    ``SECRET_KEY_FALLBACKS``, the one whose token matches the stored hash (one primary-key
    read); with a single key, that key."""
    keys = secret_keys()
    key = keys[0]
    if len(keys) > 1:
        from .extensions import db
        from .models import Waitpoint

        stored = db.session.scalar(
            select(Waitpoint.resume_hash).where(Waitpoint.id == waitpoint_id)
        )
        key = next(
            (k for k in keys if token_hash(waitpoint_token(waitpoint_id, "resume", k)) == stored),
            key,
        )
    base = current_app.config["BASE_URL"]
    return Links(
        resume_url=f"{base}/flow/resume/{waitpoint_token(waitpoint_id, 'resume', key)}",
        cancel_url=f"{base}/flow/cancel/{waitpoint_token(waitpoint_id, 'cancel', key)}",
    )


def links_visible() -> bool:
    """Whether the person of this request may see links: a link acts without a login, so only
    those who may resume and cancel anyway (operators and up) see one (docs: roles)."""
    return bool(
        has_request_context()
        and current_user.is_authenticated
        and current_user.has_role("operator")
    )


def mask_links(value: Any) -> Any:
    """``value`` (text, or JSON) with the token of every resume and cancel link replaced by
    ``[hidden]``: what the console shows to those who may not see links."""
    if isinstance(value, str):
        return LINK_TOKEN_RE.sub(rf"\g<1>{HIDDEN}", value)
    if isinstance(value, dict):
        return {key: mask_links(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_links(item) for item in value]
    return value
