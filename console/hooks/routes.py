"""The webhook view: authenticate by the URL's secret, take the JSON body as the run's input."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ..auth import public
from ..errors import ConsoleError, NotFound
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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def hook_input() -> Any:
    """The request body as JSON; an empty body is an empty input."""
    limit = current_app.config["MAX_PAYLOAD_BYTES"]
    if (request.content_length or 0) > limit:
        raise ConsoleError(
            f"The request body is {request.content_length} bytes; the limit is {limit}",
            status=413,
        )
    # Reading more than MAX_CONTENT_LENGTH (a body sent without a length) raises 413 too.
    raw = request.get_data(cache=False)
    if len(raw) > limit:
        raise ConsoleError(f"The request body is over the limit of {limit} bytes", status=413)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ConsoleError(f"The request body must be JSON: {exc}") from exc


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
