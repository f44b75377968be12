"""Link views. GET only shows a confirmation page (email scanners prefetch links); POST, PUT
and PATCH act, and their body becomes ``resume_data`` or ``callback_request``."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, render_template, request

from .. import runs as domain
from ..auth import public
from ..errors import ConsoleError, NotFound
from ..jsonbody import JSONRefused, body_json, parse_json, read_body
from ..models import Run, Waitpoint
from ..tasks.queries import approval_emails
from . import bp

ACTIONS = ("resume", "cancel")
# Credentials a caller may send with a callback never reach step code (which stores the
# request in the run's output): these headers, and any whose name has one of the words below.
HIDDEN_HEADERS = {"cookie", "authorization", "proxy-authorization", "x-api-key", "x-auth-token"}
HIDDEN_HEADER_WORDS = ("token", "secret", "password", "passwd", "api-key", "apikey", "api_key")


def is_credential(header: str) -> bool:
    name = header.lower()
    return name in HIDDEN_HEADERS or any(word in name for word in HIDDEN_HEADER_WORDS)


def wants_html() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return (
        best == "text/html"
        and request.accept_mimetypes[best] > request.accept_mimetypes["application/json"]
    )


def body_payload(raw: bytes) -> Any:
    """The request's JSON body, form fields or raw text; None when empty."""
    if request.is_json:
        return body_json(raw) if raw else None
    if request.form:
        fields = {k: v if len(v) > 1 else v[0] for k, v in request.form.lists()}
        if set(fields) <= {"comment"}:
            comment = str(fields.get("comment", "")).strip()
            return {"comment": comment} if comment else None
        return fields
    return raw.decode("utf-8", "replace") or None


def callback_request(raw: bytes) -> dict[str, Any]:
    return {
        "method": request.method,
        "headers": {k: v for k, v in request.headers.items() if not is_credential(k)},
        "query": request.args.to_dict(),
        "json": callback_json(raw),
        "body": raw.decode("utf-8", "replace"),
    }


def callback_json(raw: bytes) -> Any:
    # The raw body is kept beside it, so JSON with bad syntax is only None; JSON the console
    # does not take (too deep, NaN) is refused as in every other body.
    if not request.is_json:
        return None
    try:
        return parse_json(raw)
    except JSONRefused as exc:
        raise ConsoleError(f"The request body must be JSON: {exc}") from None
    except ValueError:
        return None


def load(action: str, token: str) -> tuple[Waitpoint, Run]:
    if action not in ACTIONS:
        raise NotFound("Unknown link")
    waitpoint = domain.find_waitpoint(token, action)
    return waitpoint, domain.get_run(waitpoint.run_id)


def answer(body: dict[str, Any], code: int, page: str, **context: Any) -> Any:
    if wants_html():
        return render_template(page, body=body, code=code, **context), code
    return jsonify(body), code


@bp.errorhandler(ConsoleError)
def console_error(exc: ConsoleError) -> Any:
    # An unknown token (404), a body too large (413) or not JSON the console takes (400).
    message = "The request body is too large" if exc.status == 413 else exc.message
    return answer({"error": message, "details": exc.details}, exc.status, "flow/result.html")


@bp.get("/<action>/<token>")
@public
def confirm(action: str, token: str) -> Any:
    waitpoint, run = load(action, token)
    # Links masked: this page is public, and whoever holds one link need not see the other.
    email = approval_emails([], waitpoint, links=False).get(run.id)
    return render_template(
        "flow/confirm.html", action=action, waitpoint=waitpoint, run=run, email=email
    )


@bp.route("/<action>/<token>", methods=["POST", "PUT", "PATCH"])
@public
def act(action: str, token: str) -> Any:
    waitpoint, run = load(action, token)
    raw = read_body(current_app.config["MAX_PAYLOAD_BYTES"])
    rerun = waitpoint.kind == "rerun" and action == "resume"
    payload = callback_request(raw) if rerun else body_payload(raw)
    result = domain.act_on_link(token, action, payload)
    body: dict[str, Any] = {"run": result.run_id, "action": result.action, "status": result.status}
    if result.code == 409:
        body = {
            "error": f"This run was already {result.outcome} through its other link",
            "details": [],
            "run": result.run_id,
            "outcome": result.outcome,
            "status": result.status,
        }
    elif result.code == 410:
        body = {
            "error": "This link's wait is over",
            "details": [],
            "run": result.run_id,
            "outcome": result.outcome,
            "status": result.status,
        }
    return answer(body, result.code, "flow/result.html", run=run, waitpoint=waitpoint)
