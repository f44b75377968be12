"""The scheduler process: rq-scheduler's clock plus the console's reconciler.

rq-scheduler moves its due jobs (cron fires) onto their queues; the reconciler delivers run
timers and re-enqueues lost work. Several scheduler processes may run: a Redis lock lets one
reconcile at a time, and every action is idempotent anyway.
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

from console.extensions import db

from . import reconciler

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
            if self.scheduler.acquire_lock():
                try:
                    self.scheduler.enqueue_jobs()
                finally:
                    self.scheduler.remove_lock()
            if self.conn.set(LOCK_KEY, self.identity, nx=True, ex=max(2, int(self.tick * 5))):
                try:
                    reconciler.wake_due_timers()
                    reconciler.time_out_suspensions()
                    if time.monotonic() - self.last_reconcile >= self.interval:
                        reconciler.requeue_lost_runs()
                        self.last_reconcile = time.monotonic()
                finally:
                    self.conn.delete(LOCK_KEY)
        except (redis.RedisError, OSError) as exc:
            log.warning("Redis unavailable (%s); retrying", exc)
        except Exception:
            log.exception("scheduler tick failed")
            db.session.rollback()
        finally:
            db.session.remove()
