"""Worker classes for the run queue and the editor's test queue."""

from __future__ import annotations

import threading
from typing import Any

from flask import current_app
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.worker import WorkerStatus

from .app import get_app, get_sandbox, shut_down_sandbox
from .jobs import warm_up


class InProcessWorker(SimpleWorker):
    """RQ's SimpleWorker that keeps its own and the job's heartbeats in Redis while a job
    executes, as RQ's forking worker does while it watches its work-horse: a run may take
    longer than RQ's worker TTL (420 s), and the worker would then look dead to RQ.

    On SIGINT or SIGTERM, RQ's warm shutdown waits for the job in progress, which would wait
    for a hanging step: the step's process is killed instead, and the run is given back
    (``Runner.stopped``) for the next worker to replay, with no attempt or recovery counted.
    """

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        shut_down_sandbox()

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.job_monitoring_interval):
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception:  # Redis away for a moment: the next beat retries
                    self.log.exception("heartbeat of job %s failed", job.id)

        thread = threading.Thread(target=beat, name="rq-heartbeat", daemon=True)
        thread.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            done.set()
            thread.join()
        self.set_state(WorkerStatus.IDLE)


class ConsoleWorker(InProcessWorker):
    """The worker: RQ's worker executing each job in its own process, the console app loaded
    once.

    Step code never executes here: it executes in the step sandbox's step processes (one per
    run, forked from a zygote this process starts once), which give the crash isolation RQ's
    fork per job used to. A work-horse per job would also cost its fork (~4 ms with the app
    imported) and a zygote of its own (~130 ms), since a zygote serves only the process that
    started it. The engine's statements are prepared at start (``warm_up``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        get_app()
        warm_up()
        get_sandbox().start()  # the zygote, before the first job needs it
        super().__init__(*args, **kwargs)


class SimpleConsoleWorker(InProcessWorker):
    """The same worker without the warm-up (``--simple``, tests): steps are sandboxed too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        get_app()
        super().__init__(*args, **kwargs)


def default_queues(connection: Redis) -> list[Queue]:
    """The run queue first (runs are never held up by tests), then the test queue."""
    return [
        Queue(current_app.config["RUN_QUEUE"], connection=connection),
        Queue(current_app.config["TEST_QUEUE"], connection=connection),
    ]
