"""Worker classes for the run queue and the editor's test queue."""

from __future__ import annotations

from typing import Any

from flask import current_app
from redis import Redis
from rq import Queue, SimpleWorker, Worker

from .app import get_app
from .jobs import warm_up


class ConsoleWorker(Worker):
    """RQ's forking worker with the console app loaded once in the parent.

    Each job runs in a forked work-horse, so a step that crashes the interpreter (or is
    killed) never takes the worker down. The app, the ORM mappers and the engine's compiled
    SQL are prepared before the fork (``warm_up``), so a horse starts warm instead of paying
    for them on every job; ``get_app`` drops the inherited database connections in the horse.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        get_app()
        warm_up()
        super().__init__(*args, **kwargs)


class SimpleConsoleWorker(SimpleWorker):
    """Executes jobs in the worker process itself: faster, for tests and small installs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        get_app()
        super().__init__(*args, **kwargs)


def default_queues(connection: Redis) -> list[Queue]:
    """The run queue first (runs are never held up by tests), then the test queue."""
    return [
        Queue(current_app.config["RUN_QUEUE"], connection=connection),
        Queue(current_app.config["TEST_QUEUE"], connection=connection),
    ]
