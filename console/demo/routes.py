"""``/demo/jobs``: a pretend external job service for the example workflows.

Public on purpose: step code calls it without credentials. What keeps that harmless:

- a job is a small JSON value in Redis (the body is capped at ``MAX_BODY_BYTES``) that
  expires after a day; each client address creates at most ``DEMO_RATE_LIMIT_ADDRESS`` jobs
  (100 an hour), so that one client cannot use up the ceiling for everyone
  (``DEMO_RATE_LIMIT_TOTAL``, 1000 an hour);
- a ``callback_url`` must be a link of this console (``{BASE_URL}/flow/...``), so the
  callback cannot be pointed at other hosts or at the console's other routes.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ..auth import public
from ..extensions import limiter
from ..queueing import get_redis, redis_url
from ..ratelimit import demo_address_key, demo_total_key
from . import bp
from .jobs import create_job, job_status, load_job

DEFAULT_SECONDS = 3
MAX_SECONDS = 60
MAX_BODY_BYTES = 16 * 1024


def error(message: str, status: int) -> Any:
    return jsonify(error=message, details=[]), status


@bp.before_request
def _redis_up() -> None:
    redis_url()  # the limits are counted in Redis: start the embedded one before they are


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Any:
    return error(exc.description or exc.name, exc.code or 500)


def status_url(job_id: str) -> str:
    return f"{current_app.config['BASE_URL']}/demo/jobs/{job_id}"


def read_body() -> tuple[dict[str, Any] | None, Any]:
    """The JSON object in the body (empty: ``{}``), else ``(None, error response)``."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return None, error(f"The body is over the demo's limit of {MAX_BODY_BYTES} bytes", 413)
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY_BYTES:
        return None, error(f"The body is over the demo's limit of {MAX_BODY_BYTES} bytes", 413)
    if not raw.strip():
        return {}, None
    try:
        body = json.loads(raw)
    except ValueError:
        return None, error("The body must be JSON", 400)
    if not isinstance(body, dict):
        return None, error("The body must be a JSON object", 400)
    return body, None


@bp.post("/jobs")
@public
# Limits of one time unit are counted in the order they are declared, from the innermost, and
# counting stops at the first one over: a client over its own limit uses none of everyone's.
@limiter.limit(
    lambda: current_app.config["DEMO_RATE_LIMIT_TOTAL"],
    key_func=demo_total_key,
    error_message="The demo service is at its limit for everyone; try again later",
)
@limiter.limit(
    lambda: current_app.config["DEMO_RATE_LIMIT_ADDRESS"],
    key_func=demo_address_key,
    error_message="Too many demo jobs from your address; try again later",
)
def create() -> Any:
    body, problem = read_body()
    if body is None:
        return problem
    seconds = body.get("seconds", DEFAULT_SECONDS)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return error("seconds must be a number", 422)
    if not 0 <= seconds <= MAX_SECONDS:
        return error(f"seconds must be between 0 and {MAX_SECONDS}", 422)
    callback_url = body.get("callback_url")
    if callback_url is not None:
        links = f"{current_app.config['BASE_URL']}/flow/"
        if not isinstance(callback_url, str) or not callback_url.startswith(links):
            return error(
                f"callback_url must be a resume or cancel link of this console ({links}…)", 422
            )
    conn = get_redis()
    job = create_job(conn, seconds, body.get("result"), callback_url)
    if callback_url:
        from rq_scheduler import Scheduler

        Scheduler(queue_name=current_app.config["RUN_QUEUE"], connection=conn).enqueue_in(
            timedelta(seconds=seconds),
            "console.demo.jobs.call_back",
            job["id"],
            timeout=60,
            job_result_ttl=3600,
            job_description=f"demo job {job['id']}: call back",
        )
    return jsonify(id=job["id"], status="running", status_url=status_url(job["id"])), 201


@bp.get("/jobs/<job_id>")
@public
def show(job_id: str) -> Any:
    job = load_job(get_redis(), job_id)
    if job is None:
        return error("No demo job with this id (jobs expire after a day)", 404)
    status = job_status(job)
    answer: dict[str, Any] = {"id": job["id"], "status": status}
    if status == "done":
        answer["result"] = job.get("result")
    return jsonify(answer)
