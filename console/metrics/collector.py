"""The console's series, read from the database (the truth, shared by every process) and from
Redis (the queue, the live workers, and two counters that the scheduler process keeps there:
``SCHEDULER_TICK_KEY``, ``REQUEUES_KEY``). Computed at each scrape, so gunicorn's workers, the
RQ workers and the scheduler need no shared metrics files."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from flask import current_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, extract, func, select
from sqlalchemy.sql import ColumnElement

from ..extensions import db
from ..models import RUN_STATUSES, TERMINAL, Run, StepRun, Waitpoint, Workflow
from ..queueing import get_redis
from ..timeutil import utcnow

log = logging.getLogger(__name__)
SCHEDULER_TICK_KEY = "console:metrics:scheduler_tick"
REQUEUES_KEY = "console:metrics:reconciler_requeues"
RUN_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0)
STEP_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
LINK_ACTIONS = ("resumed", "canceled", "timed_out")


def _seconds(start: Any, end: Any) -> ColumnElement[Any]:
    if db.engine.dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return extract("epoch", end - start)


def _histogram(
    name: str, doc: str, value: ColumnElement[Any], buckets: tuple[float, ...], query: Any
) -> HistogramMetricFamily:
    """Bucket counts summed in SQL, per workflow: no row leaves the database."""
    columns = [func.sum(case((value <= b, 1), else_=0)) for b in buckets]
    rows = db.session.execute(
        query.add_columns(func.count(), func.coalesce(func.sum(value), 0.0), *columns).group_by(
            Workflow.name
        )
    ).all()
    family = HistogramMetricFamily(name, doc, labels=["workflow"])
    for row in rows:
        counts = [(f"{b:g}", float(c or 0)) for b, c in zip(buckets, row[3:], strict=True)]
        family.add_metric([row[0]], counts + [("+Inf", float(row[1]))], float(row[2]))
    return family


class ConsoleCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from self._runs()
        yield from self._steps()
        yield from self._links()
        yield from self._redis()
        db.session.commit()

    def _runs(self) -> Iterator[Metric]:
        by_status = db.session.execute(
            select(Workflow.name, Run.status, func.count())
            .join(Workflow, Workflow.id == Run.workflow_id)
            .group_by(Workflow.name, Run.status)
        ).all()
        gauge = GaugeMetricFamily(
            "console_runs", "Runs by workflow and status, now", labels=["workflow", "status"]
        )
        started = CounterMetricFamily(
            "console_runs_finished",
            "Runs that finished, by workflow and status (kept runs; pruning lowers it)",
            labels=["workflow", "status"],
        )
        seen: dict[str, dict[str, int]] = {}
        for name, status, count in by_status:
            seen.setdefault(name, {})[status] = int(count)
        for name, counts in sorted(seen.items()):
            for status in RUN_STATUSES:
                gauge.add_metric([name, status], counts.get(status, 0))
                if status in TERMINAL:
                    started.add_metric([name, status], counts.get(status, 0))
        yield gauge
        yield started
        yield _histogram(
            "console_run_duration_seconds",
            "Wall-clock time of finished runs, from their start to their end",
            _seconds(Run.started_at, Run.finished_at),
            RUN_BUCKETS,
            select(Workflow.name)
            .join(Run, Run.workflow_id == Workflow.id)
            .where(Run.finished_at.is_not(None), Run.started_at.is_not(None)),
        )
        oldest = db.session.scalar(select(func.min(Run.created_at)).where(Run.status == "pending"))
        yield GaugeMetricFamily(
            "console_oldest_pending_run_age_seconds",
            "Age of the oldest pending run (0: none)",
            value=(utcnow() - oldest).total_seconds() if oldest else 0.0,
        )

    def _steps(self) -> Iterator[Metric]:
        rows = db.session.execute(
            select(Workflow.name, StepRun.status, func.count())
            .join(Run, Run.id == StepRun.run_id)
            .join(Workflow, Workflow.id == Run.workflow_id)
            .group_by(Workflow.name, StepRun.status)
        ).all()
        counter = CounterMetricFamily(
            "console_steps",
            "Step checkpoints by workflow and status",
            labels=["workflow", "status"],
        )
        for name, status, count in rows:
            counter.add_metric([name, status], int(count))
        yield counter
        yield _histogram(
            "console_step_duration_seconds",
            "Duration of step executions that ended",
            StepRun.duration_ms / 1000.0,
            STEP_BUCKETS,
            select(Workflow.name)
            .join(Run, Run.workflow_id == Workflow.id)
            .join(StepRun, StepRun.run_id == Run.id)
            .where(StepRun.duration_ms.is_not(None)),
        )

    def _links(self) -> Iterator[Metric]:
        rows = db.session.execute(
            select(Waitpoint.state, func.count())
            .where(Waitpoint.state.in_(LINK_ACTIONS))
            .group_by(Waitpoint.state)
        ).all()
        counts = dict(rows)
        counter = CounterMetricFamily(
            "console_link_actions",
            "Waits decided by a resume or cancel link (or the console's buttons), or timed out",
            labels=["action"],
        )
        for action in LINK_ACTIONS:
            counter.add_metric([action], int(counts.get(action, 0)))
        yield counter

    def _redis(self) -> Iterator[Metric]:
        from rq import Queue, Worker

        try:
            conn = get_redis()
            queues = [current_app.config["RUN_QUEUE"], current_app.config["TEST_QUEUE"]]
            depth = {name: Queue(name, connection=conn).count for name in queues}
            workers = Worker.count(connection=conn)
            tick, requeues = conn.mget(SCHEDULER_TICK_KEY, REQUEUES_KEY)
        except Exception as exc:  # the database's series are still worth answering
            log.warning("metrics: Redis unavailable (%s)", exc)
            yield GaugeMetricFamily("console_redis_up", "Whether Redis answered", value=0)
            return
        yield GaugeMetricFamily("console_redis_up", "Whether Redis answered", value=1)
        queue = GaugeMetricFamily("console_queue_depth", "Jobs waiting per queue", labels=["queue"])
        for name, count in depth.items():
            queue.add_metric([name], count)
        yield queue
        yield GaugeMetricFamily("console_workers", "Live RQ workers", value=workers)
        yield GaugeMetricFamily(
            "console_scheduler_last_tick_timestamp_seconds",
            "Unix time of the scheduler's last tick (0: none seen)",
            value=float(tick or 0),
        )
        yield CounterMetricFamily(
            "console_reconciler_requeues",
            "Runs the reconciler enqueued again (lost jobs, dead workers)",
            value=float(requeues or 0),
        )


def record_tick(conn: Any) -> None:
    """The scheduler process, once per tick."""
    conn.set(SCHEDULER_TICK_KEY, f"{time.time():.3f}")
