"""Schedules on Redis: one rq-scheduler job per enabled schedule, and the fire job.

rq-scheduler's own ``cron()`` computes in UTC or the server's local time only, so each
schedule registers just its next fire time (``enqueue_at``), computed in the schedule's own
timezone by ``console.scheduling``, under a deterministic id ``schedule-<id>-<fire time>``.
``reconcile`` (the scheduler process, on start, on every change and every few seconds) makes
the registered jobs exactly the wanted ones, like redash's ``schedule_periodic_jobs``: jobs of
deleted, paused or edited schedules are removed, missing ones (a new schedule, the next fire
after one that just fired, everything after a FLUSHALL) are registered. Ids are
deterministic, so reconciling twice, or from two scheduler processes, never duplicates a job;
and the database's unique fire row means that even a duplicate job could not start a second
run.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from rq import Queue
from rq_scheduler import Scheduler

from console import scheduling as domain
from console.extensions import db
from console.models import Schedule
from console.queueing import get_redis
from console.timeutil import utcnow

from .app import get_sandbox, job_context
from .runtime import RunInfo, StepLogger
from .sandbox import StepCall

log = logging.getLogger(__name__)

FIRE_JOB = "workers.schedules.fire_schedule"
JOB_PREFIX = "schedule-"
# A registered fire this much overdue was not moved to the queue by rq-scheduler: no
# scheduler ran then. It is removed and handled by the missed-fire policy instead.
STALE_AFTER = timedelta(seconds=60)
# The input snippet has its own deadline (SIGALRM, which RQ's job timeout would use as well):
# a snippet that hangs is then a failed fire, not a job killed and retried as missed.
FIRE_JOB_TIMEOUT = -1
INPUT_TIMEOUT = 30.0
LIVE = {"scheduled", "queued", "started", "deferred"}


def job_id(schedule_id: int, fire_at: datetime) -> str:
    return f"{JOB_PREFIX}{schedule_id}-{fire_at.astimezone(UTC):%Y%m%dT%H%MZ}"


def parse_job_id(value: str) -> tuple[int, datetime] | None:
    try:
        schedule_id, stamp = value[len(JOB_PREFIX) :].split("-", 1)
        fire_at = datetime.strptime(stamp, "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
        return int(schedule_id), fire_at
    except ValueError:
        return None


# ------------------------------------------------------------------------------ the job


def fire_schedule(
    schedule_id: int, fire_at: str, status: str = "started", note: str | None = None
) -> str | None:
    """The RQ job of one fire time: evaluate the input here, on a worker, and start the run
    (at most once per fire time). Returns the fire's status."""
    with job_context():
        when = datetime.fromisoformat(fire_at).astimezone(UTC)
        row = domain.fire(schedule_id, when, evaluate_input, status=status, note=note)
        return row.status if row is not None else None


class InputFailed(Exception):
    """The input snippet raised; carries its traceback from the snippet's frames on."""

    def __init__(self, message: str, schedule_traceback: str) -> None:
        super().__init__(message)
        self.schedule_traceback = schedule_traceback


# What the step process executes for a schedule's snippet: the snippet, then a run(ctx) that
# calls its input(now) with the fire time in the schedule's timezone. Appended, so the
# snippet's own lines keep their numbers in a traceback.
INPUT_CALL = """

def run(ctx):
    import datetime as _datetime
    import zoneinfo as _zoneinfo

    _now = _datetime.datetime.fromisoformat(ctx.input["now"])
    _input = globals().get("input")  # the built-in input() is not a global
    if not callable(_input):
        raise TypeError("the snippet does not define input(now)")
    return _input(_now.astimezone(_zoneinfo.ZoneInfo(ctx.input["timezone"])))
"""


class NoEngine:
    """A schedule's snippet has no ``ctx``: nothing of the engine is reachable from it."""

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"{name} is not available in a schedule's input(now)")

        return refuse


def evaluate_input(schedule: Schedule, now: datetime) -> Any:
    """The schedule's input: its JSON, or what its snippet's ``input(now)`` returns, with
    ``now`` the fire time in the schedule's timezone. The snippet is an editor's code, so it
    executes in the step sandbox like a step (its environment, files and limits), never in
    this process."""
    if schedule.input_code is None:
        return schedule.input if schedule.input is not None else {}
    return evaluate_snippet(schedule.input_code, schedule.name, f"schedule-{schedule.id}", now)


def try_input(code: str, name: str, now: str, timezone: str) -> dict[str, Any]:
    """The RQ job of the Schedules page's dry run (test queue): ``input(now)`` evaluated as a
    fire evaluates it, for the next fire time. Returns ``{"output"}`` or ``{"error"}``."""
    with job_context():
        try:
            when = datetime.fromisoformat(now).astimezone(ZoneInfo(timezone))
            return {"output": evaluate_snippet(code, name, f"schedule-try-{name}", when)}
        except InputFailed as exc:
            return {"error": exc.schedule_traceback}


def evaluate_snippet(code: str, schedule_name: str, run_id: str, now: datetime) -> Any:
    name = f"schedule {schedule_name}"
    call = StepCall(
        name=name,
        code=code + INPUT_CALL,
        timeout=INPUT_TIMEOUT,
        input={"now": now.isoformat(), "timezone": str(now.tzinfo or "UTC")},
        run=RunInfo(id=run_id),
    )
    end = get_sandbox().execute(call, NoEngine(), StepLogger(name, 1))
    if end.kind == "ok":
        return end.output
    if end.ended == "timeout" or "timed out after" in (end.summary or ""):
        message = f"input(now) took longer than {INPUT_TIMEOUT:g} s and was stopped"
        raise InputFailed(message, f"TimeoutError: {message}")
    error = (end.error or end.summary or "input(now) failed").replace(
        f'"<step {name}>"', f'"<schedule {schedule_name}>"'
    )
    summary = end.summary or error.splitlines()[-1]
    raise InputFailed(summary, error)


# --------------------------------------------------------------------------- reconciling


def scheduler_for(conn: Any) -> Scheduler:
    return Scheduler(queue_name=current_app.config["RUN_QUEUE"], connection=conn)


def registered_ids(conn: Any, scheduler: Scheduler) -> list[str]:
    members = conn.zrange(scheduler.scheduled_jobs_key, 0, -1)
    ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
    return [i for i in ids if i.startswith(JOB_PREFIX)]


def _remove(conn: Any, scheduler: Scheduler, jid: str) -> None:
    scheduler.cancel(jid)
    conn.delete(f"rq:job:{jid}")


def _job_status(conn: Any, jid: str) -> str | None:
    value = conn.hget(f"rq:job:{jid}", "status")
    return value.decode() if isinstance(value, bytes) else value


def reconcile(now: datetime | None = None) -> dict[str, int]:
    """Make rq-scheduler's jobs for schedules exactly the wanted ones, then settle missed
    fires. Idempotent; callers serialise it (the scheduler's reconciler lock)."""
    now = now or utcnow()
    conn = get_redis()
    scheduler = scheduler_for(conn)
    active = domain.active_schedules(now)
    wanted = {job_id(s.id, s.next_fire_at): s for s in active.values()}
    removed = added = 0
    for jid in registered_ids(conn, scheduler):
        if jid in wanted:
            continue
        parsed = parse_job_id(jid)
        if parsed is not None:
            schedule = active.get(parsed[0])
            fire_at = parsed[1]
            # Due right now: rq-scheduler is about to move it to the queue; let it.
            if (
                schedule is not None
                and now - STALE_AFTER < fire_at <= now
                and domain.is_fire_time(schedule.cron, schedule.timezone, fire_at)
            ):
                continue
        log.info("removing schedule job %s", jid)
        _remove(conn, scheduler, jid)
        removed += 1
    for jid, schedule in wanted.items():
        if conn.zscore(scheduler.scheduled_jobs_key, jid) is None:
            scheduler.enqueue_at(
                schedule.next_fire_at,
                FIRE_JOB,
                schedule.id,
                schedule.next_fire_at.isoformat(),
                job_id=jid,
                timeout=FIRE_JOB_TIMEOUT,
                job_result_ttl=0,
                job_description=f"schedule {schedule.name} ({schedule.id}) fire",
            )
            added += 1
    queue = Queue(current_app.config["RUN_QUEUE"], connection=conn)
    for schedule in active.values():

        def pending(fire_at: datetime, _id: int = schedule.id) -> bool:
            return _job_status(conn, job_id(_id, fire_at)) in LIVE

        def start(fire_at: datetime, note: str, _s: domain.Active = schedule) -> None:
            queue.enqueue(
                FIRE_JOB,
                _s.id,
                fire_at.isoformat(),
                "missed",
                note,
                job_id=job_id(_s.id, fire_at),
                job_timeout=FIRE_JOB_TIMEOUT,
                result_ttl=0,
                failure_ttl=86400,
                description=f"schedule {_s.name} ({_s.id}) missed fire",
            )

        try:
            domain.catch_up(schedule, now, pending, start)
        except Exception:  # one schedule's problem must not stop the others
            log.exception("catching up schedule %s failed", schedule.id)
            with contextlib.suppress(Exception):
                db.session.rollback()
    return {"active": len(active), "added": added, "removed": removed}
