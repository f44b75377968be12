"""API views: parse, call the domain, answer JSON. Errors are ``{"error", "details"}``."""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, g, jsonify, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from .. import runs as domain
from ..auth import role
from ..definitions import save_workflow
from ..errors import ConsoleError, NotFound, ValidationFailed
from ..extensions import csrf, db
from ..jsonbody import body_json, read_body
from ..links import links_visible, mask_links
from ..models import RUN_STATUSES, LogLine, Run, Workflow
from ..serialize import run_detail, run_summary, workflow_detail, workflow_summary
from ..timeutil import isoformat
from ..webhooks import rotate_webhook, webhook_url
from . import bp

MAX_LIMIT = 200
RUN_ID_RE = re.compile(r"^[0-9a-z]{26}$")


@bp.before_request
def csrf_for_cookie_sessions() -> None:
    # Bearer tokens cannot be sent by another site's form; a session cookie can.
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    # Resolving the user first tells whether it came from a token or the session cookie.
    if current_user.is_authenticated and not g.get("token_auth"):
        csrf.protect()


@bp.errorhandler(ConsoleError)
def console_error(exc: ConsoleError) -> Any:
    return jsonify(error=exc.message, details=exc.details), exc.status


@bp.errorhandler(CSRFError)
def csrf_error(exc: CSRFError) -> Any:
    return jsonify(error=f"CSRF check failed: {exc.description}", details=[]), 400


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Any:
    messages = {413: "The request body is too large"}
    message = messages.get(exc.code or 500, exc.description)
    return jsonify(error=message, details=[]), exc.code


@bp.app_errorhandler(404)
@bp.app_errorhandler(405)
def api_routing_error(exc: HTTPException) -> Any:
    # A URL under /api/ (or a webhook's /hooks/) that matches no route belongs to no
    # blueprint, so the handler above does not see it; answer JSON there too, and leave other
    # pages to their own handling.
    if request.path in ("/api", "/hooks") or request.path.startswith(("/api/", "/hooks/")):
        return http_error(exc)
    return exc


def json_body(required: bool = True) -> Any:
    # Over MAX_CONTENT_LENGTH, with or without a Content-Length, this raises 413.
    raw = request.get_data(cache=True)
    # A form-encoded body that CSRF checking already parsed reads as empty: look at the
    # length as well, so that it is refused as "not JSON" rather than taken as {}.
    if not required and not raw and not request.content_length:
        return {}
    if not request.is_json:
        raise ConsoleError("The request body must be JSON (Content-Type: application/json)")
    return body_json(raw)


def started_view(run: Run) -> dict[str, Any]:
    """The answer to starting a run (also a re-run's and a recovery's)."""
    return {
        "id": run.id,
        "status": run.status,
        "workflow": run.workflow.name,
        "version": run.version.label,
        "url": run_summary(run)["url"],
    }


def load_workflow(name: str) -> Workflow:
    return domain.get_workflow(name)


def load_run(run_id: str) -> Run:
    if not RUN_ID_RE.match(run_id):
        raise NotFound(f"No run with id {run_id!r}")
    return domain.get_run(run_id)


# ----------------------------------------------------------------------------- workflows


@bp.get("/workflows")
@role("viewer")
def list_workflows() -> Any:
    workflows = db.session.scalars(select(Workflow).order_by(Workflow.name))
    return jsonify(data=[workflow_summary(w) for w in workflows])


@bp.put("/workflows/<name>")
@role("editor")
def put_workflow(name: str) -> Any:
    data = json_body()
    if not isinstance(data, dict):
        raise ValidationFailed("A workflow definition must be a JSON object")
    publish = data.get("publish", True)
    if not isinstance(publish, bool):
        raise ValidationFailed("publish must be true or false")
    existed = db.session.scalar(select(Workflow.id).filter_by(name=name)) is not None
    workflow, version, published = save_workflow(
        data, name, publish=publish, note=str(data.get("note") or ""), user=current_user.email
    )
    body = {
        "name": workflow.name,
        "version": version.label if version else None,
        "published": published,
    }
    return jsonify(body), 200 if existed else 201


@bp.get("/workflows/<name>")
@role("viewer")
def get_workflow(name: str) -> Any:
    workflow = load_workflow(name)
    data = workflow_detail(workflow)
    # The URL carries the webhook's secret: only those who may change the workflow see it.
    if current_user.has_role("editor"):
        data["webhook_url"] = webhook_url(workflow)
    return jsonify(data)


@bp.post("/workflows/<name>/webhook")
@role("editor")
def rotate_workflow_webhook(name: str) -> Any:
    return jsonify(webhook_url=rotate_webhook(load_workflow(name)))


@bp.get("/workflows/<name>/versions/<label>")
@role("viewer")
def get_version(name: str, label: str) -> Any:
    version = domain.get_version(load_workflow(name), label)
    data = dict(version.definition)
    data.update(published_at=isoformat(version.published_at), note=version.note)
    return jsonify(data)


@bp.delete("/workflows/<name>/versions/<label>")
@role("editor")
def delete_version(name: str, label: str) -> Any:
    version = domain.get_version(load_workflow(name), label)
    domain.delete_version(version)
    return jsonify(name=name, version=label, deleted=True)


# ---------------------------------------------------------------------------------- runs


@bp.post("/workflows/<name>/runs")
@role("operator")
def start_run(name: str) -> Any:
    workflow = load_workflow(name)
    body = json_body(required=False)
    if not isinstance(body, dict):
        raise ValidationFailed('The body must be a JSON object: {"input": {...}}')
    unknown = sorted(set(body) - {"input", "version", "idempotency_key"})
    if unknown:
        raise ValidationFailed(
            "Unknown fields in the request",
            [{"path": f"/{k}", "message": "unknown field"} for k in unknown],
        )
    run, created = domain.start_run(
        workflow,
        body.get("input"),
        version=body.get("version"),
        trigger="api",
        idempotency_key=body.get("idempotency_key"),
        user=current_user.email,
    )
    response = jsonify(started_view(run))
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 202


@bp.get("/runs")
@role("viewer")
def list_runs() -> Any:
    """``GET /api/runs``: newest first, filtered by status and workflow, paged by cursor."""
    query = select(Run).order_by(Run.id.desc())
    statuses = [s.strip() for s in request.args.get("status", "").split(",") if s.strip()]
    bad = [s for s in statuses if s not in RUN_STATUSES]
    if bad:
        raise ValidationFailed(f"Unknown status {bad[0]!r}; use {', '.join(RUN_STATUSES)}")
    if statuses:
        query = query.where(Run.status.in_(statuses))
    if request.args.get("workflow"):
        query = query.where(Run.workflow_id == load_workflow(request.args["workflow"]).id)
    try:
        limit = int(request.args.get("limit", 50))
    except ValueError:
        raise ValidationFailed("limit must be an integer")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}")
    cursor = request.args.get("cursor")
    if cursor:
        if not RUN_ID_RE.match(cursor):
            raise ValidationFailed("cursor is not valid")
        query = query.where(Run.id < cursor)
    rows = list(db.session.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return jsonify(
        data=[run_summary(r) for r in rows], next_cursor=rows[-1].id if more and rows else None
    )


@bp.get("/runs/<run_id>")
@role("viewer")
def get_run(run_id: str) -> Any:
    return jsonify(run_detail(load_run(run_id), links=links_visible()))


@bp.post("/runs/<run_id>/rerun")
@role("operator")
def rerun_run(run_id: str) -> Any:
    """A new run from a finished one, or with ``dry_run`` only its plan."""
    run = load_run(run_id)
    request_ = domain.RerunRequest.parse(json_body(required=False))
    if request_.dry_run:
        plan, _, _ = domain.rerun_plan(run, request_)
        return jsonify(plan=plan.view())
    new, plan = domain.rerun_run(run, request_, current_user.email)
    return jsonify({**started_view(new), "plan": plan.view()}), 202


@bp.get("/runs/<run_id>/journal")
@role("viewer")
def run_journal(run_id: str) -> Any:
    journal = domain.build_journal(load_run(run_id).id)
    response = jsonify(journal if links_visible() else mask_links(journal))
    response.headers["Content-Disposition"] = f'attachment; filename="journal-{run_id}.json"'
    return response


@bp.post("/journals")
@role("operator")
def recover_journal() -> Any:
    """Recover: a new run that continues from the journal in the body."""
    doc = body_json(read_body(current_app.config["JOURNAL_MAX_BYTES"]))
    run, recovery = domain.recover_journal(doc, current_user)
    return jsonify({**started_view(run), "plan": recovery.plan.view()}), 202


@bp.post("/runs/<run_id>/<action>")
@role("operator")
def act_on_run(run_id: str, action: str) -> Any:
    act = domain.run_action(action)
    load_run(run_id)
    run = act(run_id)
    return jsonify(run_detail(run))


@bp.get("/runs/<run_id>/logs")
@role("viewer")
def run_logs(run_id: str) -> Any:
    run = load_run(run_id)
    query = select(LogLine).where(LogLine.run_id == run.id).order_by(LogLine.id)
    after = request.args.get("after")
    if after:
        if not after.isdigit():
            raise ValidationFailed("after must be a log line id")
        query = query.where(LogLine.id > int(after))
    try:
        limit = int(request.args.get("limit") or 1000)
    except ValueError:
        raise ValidationFailed("limit must be an integer")
    if not 1 <= limit <= 5000:
        raise ValidationFailed("limit must be between 1 and 5000")
    lines = db.session.scalars(query.limit(limit))
    data = [
        {
            "id": line.id,
            "step": line.step_name,
            "attempt": line.attempt,
            "level": line.level,
            "message": line.message,
            "fields": line.fields,
            "created_at": isoformat(line.created_at),
        }
        for line in lines
    ]
    return jsonify(data=data if links_visible() else mask_links(data))
