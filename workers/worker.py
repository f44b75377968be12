"""Worker classes for the run queue and the editor's test queue."""

from __future__ import annotations

from typing import Any

from flask import current_app
from redis import Redis
from rq import Queue, SimpleWorker

from .app import get_app, get_sandbox
from .jobs import warm_up


class ConsoleWorker(SimpleWorker):
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


class SimpleConsoleWorker(SimpleWorker):
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
