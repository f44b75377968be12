"""The demo job store (Redis) and its callback, an RQ job run by the console's workers."""

from __future__ import annotations

import json
import logging
import secrets
import time
import urllib.request
from typing import Any

import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "demo:job:"
TTL_SECONDS = 24 * 3600
ID_BYTES = 8  # 16 hex characters
CALLBACK_TIMEOUT = 10.0


def job_key(job_id: str) -> str:
    return KEY_PREFIX + job_id


def new_job_id() -> str:
    return secrets.token_hex(ID_BYTES)


def valid_job_id(job_id: str) -> bool:
    return len(job_id) == 2 * ID_BYTES and all(c in "0123456789abcdef" for c in job_id)


def create_job(
    conn: redis.Redis, seconds: float, result: Any, callback_url: str | None
) -> dict[str, Any]:
    job = {
        "id": new_job_id(),
        "created": time.time(),
        "seconds": seconds,
        "result": result,
        "callback_url": callback_url,
    }
    conn.set(job_key(job["id"]), json.dumps(job), ex=TTL_SECONDS)
    return job


def load_job(conn: redis.Redis, job_id: str) -> dict[str, Any] | None:
    if not valid_job_id(job_id):
        return None
    raw = conn.get(job_key(job_id))
    return json.loads(raw) if raw else None


def job_status(job: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    return "done" if now - float(job["created"]) >= float(job["seconds"]) else "running"


def _connection() -> redis.Redis:
    """The Redis of the RQ job being executed; outside a job, the app's."""
    from rq import get_current_job

    current = get_current_job()
    if current is not None:
        return current.connection
    from console.queueing import get_redis

    return get_redis()


def call_back(job_id: str) -> str:
    """The RQ job rq-scheduler enqueues when a demo job ends: POST its result as JSON to the
    job's ``callback_url``. An HTTP error fails the RQ job (RQ keeps it in its failed
    registry); a missing job (expired) is skipped."""
    conn = _connection()
    job = load_job(conn, job_id)
    if job is None or not job.get("callback_url"):
        log.warning("demo job %s is gone or has no callback_url; nothing to call", job_id)
        return "skipped"
    body = json.dumps({"job": job_id, "status": "done", "result": job.get("result")}).encode()
    request = urllib.request.Request(
        job["callback_url"],
        data=body,
        headers={"Content-Type": "application/json", "User-Agent": "workflow-console-demo"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=CALLBACK_TIMEOUT) as response:  # noqa: S310
        status = response.status
    log.info("demo job %s called back %s: HTTP %s", job_id, job["callback_url"], status)
    return f"HTTP {status}"
