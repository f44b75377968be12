"""The webhook view: authenticate by the URL's secret, take the JSON body as the run's input."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ..auth import public
from ..errors import ConsoleError, NotFound
from ..jsonbody import body_json, read_body
from ..runs import start_run
from ..serialize import run_url
from ..webhooks import workflow_for_hook
from . import bp


@bp.errorhandler(ConsoleError)
def console_error(exc: ConsoleError) -> Any:
    return jsonify(error=exc.message, details=exc.details), exc.status


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Any:
    messages = {413: "The request body is too large"}
    return jsonify(error=messages.get(exc.code or 500, exc.description), details=[]), exc.code


def hook_input() -> Any:
    """The request body as JSON; an empty body is an empty input."""
    raw = read_body(current_app.config["MAX_PAYLOAD_BYTES"])
    if not raw.strip():
        return {}
    return body_json(raw)


@bp.post("/<workflow>/<secret>")
@public
def trigger(workflow: str, secret: str) -> Any:
    # One answer for an unknown workflow and a wrong secret: the URL tells nothing more.
    found = workflow_for_hook(workflow, secret)
    if found is None:
        raise NotFound("No webhook at this URL")
    run, created = start_run(
        found,
        hook_input(),
        trigger="webhook",
        idempotency_key=request.headers.get("Idempotency-Key") or None,
    )
    response = jsonify(id=run.id, status=run.status, url=run_url(run.id))
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 202
