"""The scheduler process: rq-scheduler's clock plus the console's reconciler.

rq-scheduler moves its due jobs (cron fires) onto their queues; the reconciler delivers run
timers and re-enqueues lost work, and keeps the schedules' rq-scheduler jobs equal to the
database's schedules (``workers.schedules.reconcile``): on start, when a change asks for it,
after a fire and every ``RECONCILE_INTERVAL``; every ``PRUNE_INTERVAL`` it prunes one batch of
runs past their retention (``console.retention``). Several scheduler processes may run: a Redis
lock lets one reconcile at a time, and every action is idempotent anyway.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from typing import Any

import redis
from flask import current_app
from rq_scheduler import Scheduler

from console import retention
from console.extensions import db
from console.metrics.collector import record_tick

from . import reconciler, schedules

log = logging.getLogger(__name__)
LOCK_KEY = "console:reconciler:lock"


class SchedulerProcess:
    def __init__(self, tick: float = 1.0) -> None:
        from console.queueing import get_redis

        self.conn = get_redis()
        self.tick = tick
        self.interval = float(current_app.config["RECONCILE_INTERVAL"])
        self.scheduler = Scheduler(
            queue_name=current_app.config["RUN_QUEUE"], connection=self.conn, interval=tick
        )
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = False
        self.last_reconcile = 0.0
        self.prune_interval = float(current_app.config["PRUNE_INTERVAL"])
        self.last_prune = 0.0
        # Schedules are reconciled on start (before rq-scheduler moves anything, so that a
        # fire left over from before an outage is treated as missed, not started late).
        self.schedules_due = True
        self.last_schedules = 0.0

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self, iterations: int | None = None) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        log.info(
            "scheduler %s started (tick %.1fs, reconcile every %.1fs)",
            self.identity,
            self.tick,
            self.interval,
        )
        count = 0
        while not self.stopping and (iterations is None or count < iterations):
            started = time.monotonic()
            self.once()
            count += 1
            time.sleep(max(0.0, self.tick - (time.monotonic() - started)))
        log.info("scheduler %s stopped", self.identity)

    def once(self) -> None:
        try:
            record_tick(self.conn)
            if self.conn.set(LOCK_KEY, self.identity, nx=True, ex=max(2, int(self.tick * 5))):
                try:
                    self.reconcile_schedules()
                    reconciler.wake_due_timers()
                    reconciler.time_out_suspensions()
                    if time.monotonic() - self.last_reconcile >= self.interval:
                        reconciler.requeue_lost_runs()
                        self.last_reconcile = time.monotonic()
                    if time.monotonic() - self.last_prune >= self.prune_interval:
                        self.last_prune = time.monotonic()
                        retention.prune_by_policy()
                finally:
                    self.conn.delete(LOCK_KEY)
            if self.scheduler.acquire_lock():
                try:
                    moved = self.scheduler.enqueue_jobs()
                finally:
                    self.scheduler.remove_lock()
                # A schedule fired: register its next fire time on the next tick.
                if any(job.id.startswith(schedules.JOB_PREFIX) for job in moved or []):
                    self.schedules_due = True
        except (redis.RedisError, OSError) as exc:
            log.warning("Redis unavailable (%s); retrying", exc)
        except Exception:
            log.exception("scheduler tick failed")
            db.session.rollback()
        finally:
            db.session.remove()

    def reconcile_schedules(self) -> None:
        """Cheap unless something changed: one Redis DELETE per tick tells whether a change
        was committed (``console.scheduling.request_reconcile``)."""
        asked = bool(self.conn.delete(schedules.domain.DIRTY_KEY))
        interval_over = time.monotonic() - self.last_schedules >= self.interval
        if not (asked or interval_over or self.schedules_due):
            return
        self.schedules_due = False
        self.last_schedules = time.monotonic()
        try:
            result = schedules.reconcile()
        except (redis.RedisError, OSError):
            self.schedules_due = True  # try again next tick
            raise
        except Exception:  # the run timers below must not wait on a schedules problem
            log.exception("reconciling schedules failed; retrying in %.1fs", self.interval)
            db.session.rollback()
            return
        if result["added"] or result["removed"]:
            log.info("schedules reconciled: %s", result)
