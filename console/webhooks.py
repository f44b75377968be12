"""Webhook triggers (``POST /hooks/<workflow>/<secret>``, docs/links.md#webhooks).

A workflow's webhook secret is never stored: it is an HMAC under the app's secret key of the
workflow's name and a random nonce kept on the workflow, made when the workflow is created.
Rotating the nonce changes the secret, so the old URL stops working. A workflow without a
nonce (none since migration 0004) has no webhook until it is rotated: every secret is refused.
"""

from __future__ import annotations

import hmac

from flask import current_app
from sqlalchemy import select, update

from .extensions import db, write_transaction
from .links import secret_keys, sign
from .models import Workflow, new_nonce


def _secret_for(name: str, nonce: str, key: str | None = None) -> str:
    return sign(f"webhook:{name}:{nonce}", key)


def webhook_url(workflow: Workflow) -> str | None:
    """The workflow's webhook URL (a read: it never writes), or None without a nonce."""
    if workflow.webhook_nonce is None:
        return None
    secret = _secret_for(workflow.name, workflow.webhook_nonce)
    return f"{current_app.config['BASE_URL']}/hooks/{workflow.name}/{secret}"


def rotate_webhook(workflow: Workflow) -> str:
    """Give the workflow a new secret; the old URL answers 404 from now on."""
    write_transaction()
    db.session.execute(
        update(Workflow)
        .where(Workflow.id == workflow.id)
        .values(webhook_nonce=new_nonce())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    db.session.refresh(workflow)
    url = webhook_url(workflow)
    assert url is not None
    return url


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
