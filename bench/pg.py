"""The benchmark's PostgreSQL: one throwaway cluster (``tests.pgserver``, as the tests start
it) shared by every PostgreSQL figure, and the app pointed at one of its databases.

The cluster runs with ``fsync=off`` and ``synchronous_commit=off`` (the tests' settings), so
a commit is a round trip to the server and its WAL write, not a disk flush: the engine and its
commit baseline are measured on the same server, side by side.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask

from console import create_app
from console.extensions import db
from workers.app import set_app

from .harness import log


@contextmanager
def cluster() -> Iterator[Any]:
    """A started ``PostgresServer``, or None (with a note) when PostgreSQL's binaries are
    missing."""
    from tests.pgserver import PostgresServer, pg_bin

    try:
        pg_bin("initdb")
    except RuntimeError as exc:
        log(f"  PostgreSQL skipped: {exc}")
        yield None
        return
    base = Path(tempfile.mkdtemp(prefix="console-bench-pg-"))
    server = PostgresServer(base, port=55400 + os.getpid() % 90)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def app_on(url: str, restore: Flask | None) -> Iterator[Flask]:
    """The console app on ``url`` with its tables, pushed (and used by the engine in this
    process) until the block ends; then ``restore`` is the engine's app again."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    ctx = app.app_context()
    ctx.push()
    try:
        db.create_all()
        set_app(app)
        yield app
    finally:
        db.session.remove()
        db.engine.dispose()
        ctx.pop()
        if restore is not None:
            set_app(restore)
