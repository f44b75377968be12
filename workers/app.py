"""The Flask app as seen from worker processes: created once per process tree.

A forked work-horse inherits the parent's app but must not share its database connections
(SQLAlchemy's pool is not fork-safe), so the first use after a fork drops them.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from flask import Flask

if TYPE_CHECKING:
    from .sandbox import Sandbox

_app: Flask | None = None
_pid: int | None = None


def get_app() -> Flask:
    global _app, _pid
    if _app is None:
        from flask import current_app, has_app_context

        if has_app_context():
            _app = current_app._get_current_object()  # type: ignore[attr-defined]
        else:
            from console import create_app

            _app = create_app()
        _pid = os.getpid()
    elif _pid != os.getpid():
        from console.extensions import db

        with _app.app_context():
            db.engine.dispose(close=False)
        _pid = os.getpid()
    return _app


@contextmanager
def job_context() -> Iterator[None]:
    """What every RQ job of the console runs in: the app's context, and a database session
    given back when the job ends, however it ends."""
    with get_app().app_context():
        from console.extensions import db

        try:
            yield
        finally:
            db.session.remove()


def set_app(app: Flask) -> None:
    """Use this app in the current process (the CLI and tests that run workers in-process)."""
    global _app, _pid
    _app, _pid = app, os.getpid()


_sandbox: Sandbox | None = None
_sandbox_pid = os.getpid()
_shutting_down = False


def get_sandbox() -> Sandbox:
    """This process's step sandbox (its zygote starts on the first step), made from the app's
    settings; made again when they change (tests create apps with other limits)."""
    global _sandbox, _sandbox_pid
    from .sandbox import Limits, Sandbox, step_environment

    limits = Limits.from_settings(get_app().config)
    if _sandbox is not None and (
        _sandbox.limits != limits or _sandbox.env != step_environment(os.environ, limits.env_allow)
    ):
        if _sandbox_pid == os.getpid():  # a forked child's is its parent's to close
            _sandbox.close()
        _sandbox = None
    if _sandbox is None:
        _sandbox, _sandbox_pid = Sandbox(limits), os.getpid()
        if _shutting_down:
            _sandbox.shut_down()
    return _sandbox


def shut_down_sandbox() -> None:
    """The worker was asked to stop (from its signal handler): the step executing now is
    killed and no further step starts in this process."""
    global _shutting_down
    _shutting_down = True
    if _sandbox is not None and _sandbox_pid == os.getpid():
        _sandbox.shut_down()


@atexit.register
def _close_sandbox() -> None:
    """Stop this process's zygote (and a step process idle between runs) at exit; not in a
    forked child, whose sandbox is its parent's."""
    if _sandbox is not None and _sandbox_pid == os.getpid():
        _sandbox.close()
