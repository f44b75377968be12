"""Webhook triggers (SPEC §5 ``POST /hooks/<workflow>/<secret>``).

A workflow's webhook secret is never stored: it is an HMAC under the app's secret key of the
workflow's name and a random nonce kept on the workflow. Rotating the nonce changes the secret,
so the old URL stops working. The nonce is created the first time an editor needs the URL;
until then the workflow has no webhook and every secret is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from flask import current_app
from sqlalchemy import select, update

from .extensions import db, write_transaction
from .links import secret_keys
from .models import Workflow


def _secret_for(name: str, nonce: str, key: str | None = None) -> str:
    secret = (key if key is not None else secret_keys()[0]).encode()
    mac = hmac.new(secret, f"webhook:{name}:{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _set_nonce(workflow: Workflow, only_if_missing: bool) -> None:
    # One conditional UPDATE, so two editors opening a new workflow at once get the same URL.
    stmt = update(Workflow).where(Workflow.id == workflow.id)
    if only_if_missing:
        stmt = stmt.where(Workflow.webhook_nonce.is_(None))
    write_transaction()
    db.session.execute(
        stmt.values(webhook_nonce=secrets.token_hex(16)).execution_options(
            synchronize_session=False
        )
    )
    db.session.commit()
    db.session.refresh(workflow)


def webhook_secret(workflow: Workflow) -> str:
    """The workflow's current secret, creating its nonce on first use."""
    if workflow.webhook_nonce is None:
        _set_nonce(workflow, only_if_missing=True)
    assert workflow.webhook_nonce is not None
    return _secret_for(workflow.name, workflow.webhook_nonce)


def webhook_url(workflow: Workflow) -> str:
    return f"{current_app.config['BASE_URL']}/hooks/{workflow.name}/{webhook_secret(workflow)}"


def rotate_webhook(workflow: Workflow) -> str:
    """Give the workflow a new secret; the old URL answers 404 from now on."""
    _set_nonce(workflow, only_if_missing=False)
    return webhook_url(workflow)


def workflow_for_hook(name: str, secret: str) -> Workflow | None:
    """The workflow whose webhook URL this is, or None (unknown name or wrong secret alike)."""
    workflow = db.session.scalar(select(Workflow).filter_by(name=name))
    # Compare even without a workflow, so that timing does not tell which part was wrong.
    nonce = workflow.webhook_nonce if workflow is not None else None
    # The current key's URL, or one made under a key kept in SECRET_KEY_FALLBACKS.
    matched = False
    for key in secret_keys():
        expected = _secret_for(name, nonce or "no webhook", key)
        matched = hmac.compare_digest(expected.encode(), secret.encode()) or matched
    if not matched:
        return None
    return workflow if nonce is not None else None
