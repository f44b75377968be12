"""Resume and cancel links (SPEC §4).

A link's token is an HMAC of the waitpoint's random id and the action under the app's secret
key: unguessable, bound to one step execution and one action, and derivable again when a step
is replayed (so a replay hands out the same links). Only its SHA-256 is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from flask import current_app

ACTIONS = ("resume", "cancel")


@dataclass(frozen=True)
class Links:
    resume_url: str
    cancel_url: str


def waitpoint_token(waitpoint_id: str, action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown link action {action!r}")
    key = str(current_app.config["SECRET_KEY"]).encode()
    mac = hmac.new(key, f"waitpoint:{waitpoint_id}:{action}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def links_for(waitpoint_id: str) -> Links:
    base = current_app.config["BASE_URL"]
    return Links(
        resume_url=f"{base}/flow/resume/{waitpoint_token(waitpoint_id, 'resume')}",
        cancel_url=f"{base}/flow/cancel/{waitpoint_token(waitpoint_id, 'cancel')}",
    )
