"""Trying a schedule's ``input(now)`` snippet when it is saved (the Schedules page).

The snippet is an editor's code, so the web process never executes it: a worker does, on the
test queue, in the step sandbox and for the schedule's next fire time, exactly as a fire
would. The page waits for the answer; what the snippet raised, or a result that the
workflow's input schema refuses, is the input field's error. With no worker listening on the
test queue (or none answering in time) the snippet is saved untried: its fires check it.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis
from flask import current_app
from rq import Queue, Worker
from rq.job import JobStatus

from ..queueing import get_redis
from ..timeutil import utcnow
from .cron import next_fire

log = logging.getLogger(__name__)

TRY_JOB = "workers.schedules.try_input"
# The snippet's own limit is 30 s (workers.schedules.INPUT_TIMEOUT), plus the worker's start.
WAIT_SECONDS = 40.0
LINE_RE = re.compile(r'File "<schedule [^>]*>", line (\d+)')


def snippet_error(code: str, name: str, cron: str, timezone: str, schema: Any) -> str | None:
    """Why the snippet cannot give the workflow an input, tried for the next fire; None when
    it can, or when no worker could try it."""
    from .schedules import schema_error

    when = next_fire(cron, timezone, utcnow()).astimezone(ZoneInfo(timezone))
    answer = _ask_a_worker(code, name or "new", when, timezone)
    if answer is None:
        return None
    stamp = f"{when:%a %d %b %Y, %H:%M} {when.tzname()}"
    if "error" in answer:
        return f"input(now) failed when tried for the next fire ({stamp}): {_said(answer['error'])}"
    output = answer.get("output")
    if not isinstance(output, dict):
        return f"input(now) must return a JSON object; for {stamp} it returned {output!r:.200}"
    problem = schema_error(schema, output)
    if problem:
        return f"input(now) returned {output!r:.300} for {stamp}, which {problem}"
    return None


def _said(error: str) -> str:
    """The exception line of a snippet's traceback, with the snippet's line it came from."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    where = LINE_RE.findall(error)
    return lines[-1] + (f" (line {where[-1]})" if where else "")


def _ask_a_worker(code: str, name: str, when: datetime, timezone: str) -> dict[str, Any] | None:
    try:
        queue = Queue(current_app.config["TEST_QUEUE"], connection=get_redis())
        if not Worker.all(queue=queue):
            return None
        job = queue.enqueue(
            TRY_JOB,
            code,
            name,
            when.isoformat(),
            timezone,
            job_timeout=-1,
            result_ttl=60,
            failure_ttl=600,
            description=f"try the input(now) of schedule {name}",
        )
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            status = job.get_status(refresh=True)
            if status == JobStatus.FINISHED:
                result = job.return_value()
                return result if isinstance(result, dict) else None
            if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
                return None
            time.sleep(0.1)
        job.cancel()
    except redis.RedisError as exc:
        log.warning("could not try a schedule's input(now) (%s); saved untried", exc)
    return None
