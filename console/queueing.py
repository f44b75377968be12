"""Redis as transport: the connection, the run queue and enqueueing a run's job.

The database stays the truth. A job only says "look at run X"; losing it costs a delay until
the reconciler enqueues the run again, never the run.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

import redis
from flask import current_app
from rq import Queue
from sqlalchemy import update

from .extensions import changed_rows, db, write_transaction
from .models import TERMINAL, Run
from .redis_server import ensure_embedded
from .timeutil import utcnow

log = logging.getLogger(__name__)
_connections: dict[tuple[int, str], redis.Redis] = {}

RUN_JOB = "workers.jobs.advance_run"
# Every console job: no RQ timeout (a step's own timeout bounds it; RQ's alarm would share that
# timer, and a bulk action records its progress instead), a result kept briefly, failures a day.
JOB_OPTIONS: dict[str, Any] = {"job_timeout": -1, "result_ttl": 60, "failure_ttl": 86400}


def redis_url() -> str:
    url = current_app.config.get("REDIS_URL")
    if url:
        return str(url)
    url = ensure_embedded(current_app.instance_path)
    current_app.config["REDIS_URL"] = url
    return url


def get_redis() -> redis.Redis:
    """One connection pool per process (forked work-horses get their own)."""
    url = redis_url()
    key = (os.getpid(), url)
    conn = _connections.get(key)
    if conn is None:
        conn = redis.Redis.from_url(url, health_check_interval=30)
        _connections[key] = conn
    return conn


def run_queue() -> Queue:
    return Queue(current_app.config["RUN_QUEUE"], connection=get_redis())


def enqueue_run(run_id: str) -> str | None:
    """Record a new job id on the run, then put the job on the queue.

    The caller has committed the run's state; a run that has become terminal meanwhile
    is not enqueued. When Redis is unreachable the run stays due
    in the database and the reconciler enqueues it later.
    """
    job_id = f"run-{run_id}-{uuid.uuid4().hex[:8]}"
    write_transaction()
    result = db.session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status.not_in(tuple(TERMINAL)))
        .values(job_id=job_id, enqueued_at=utcnow())
    )
    recorded = changed_rows(result)
    db.session.commit()
    if not recorded:
        return None  # canceled or finished meanwhile: nothing is enqueued after a cancel
    try:
        run_queue().enqueue(
            RUN_JOB, run_id, job_id=job_id, description=f"advance run {run_id}", **JOB_OPTIONS
        )
    except redis.RedisError as exc:
        log.warning("could not enqueue run %s (%s); the reconciler will retry", run_id, exc)
        return None
    return job_id


STEP_TEST_JOB = "workers.steptest.run_step_test"


def enqueue_step_test(test_id: str) -> None:
    """Put an editor's "Test this step" on the test queue; a worker executes it, never the web
    process."""
    Queue(current_app.config["TEST_QUEUE"], connection=get_redis()).enqueue(
        STEP_TEST_JOB,
        test_id,
        job_id=f"steptest-{test_id}",
        description=f"test step ({test_id})",
        **JOB_OPTIONS,
    )


STEP_TEST_CHAIN_JOB = "workers.steptest.run_step_test_chain"


def enqueue_step_test_chain(test_ids: list[str]) -> None:
    """Put a "Test up to here" on the test queue: one job that executes the tests in order,
    each step's output passed on to the next."""
    Queue(current_app.config["TEST_QUEUE"], connection=get_redis()).enqueue(
        STEP_TEST_CHAIN_JOB,
        test_ids,
        job_id=f"steptests-{test_ids[-1]}",
        description=f"test steps up to one ({len(test_ids)} tests)",
        **JOB_OPTIONS,
    )


BULK_JOB = "workers.bulk.run_bulk_action"


def enqueue_bulk(bulk_id: str) -> None:
    """Put a bulk action (``console.runs.bulk``) on the run queue; a worker applies it."""
    run_queue().enqueue(
        BULK_JOB,
        bulk_id,
        job_id=f"bulk-{bulk_id}",
        description=f"bulk action ({bulk_id})",
        **JOB_OPTIONS,
    )
