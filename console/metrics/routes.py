"""The scrape endpoint. Any active user's API token opens it (viewers too), and so does
``METRICS_TOKEN`` when it is set: a Prometheus server needs no user of its own."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Response, current_app, g, jsonify, request
from flask_login import current_user
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..auth import public
from . import bp
from .collector import ConsoleCollector


def _metrics_token_given() -> bool:
    expected = current_app.config.get("METRICS_TOKEN")
    header = request.headers.get("Authorization", "")
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip(), expected)


@bp.get("/metrics")
@public  # authenticated here: a user's bearer token or METRICS_TOKEN, no session cookie
def metrics() -> Any:
    token_user = current_user.is_authenticated and g.get("token_auth")
    if not (token_user or _metrics_token_given()):
        answer = jsonify(
            error="send Authorization: Bearer <API token or METRICS_TOKEN>", details=[]
        )
        return answer, 401, {"WWW-Authenticate": "Bearer"}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConsoleCollector())
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
