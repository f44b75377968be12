"""Flask extensions, created at module level and bound to the app in ``create_app``."""

from __future__ import annotations

from typing import Any, cast

from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection, CursorResult, Engine, Result

# Named constraints keep migrations identical on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

db = SQLAlchemy(metadata=metadata)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = HTMX()
# Configured by ``console.ratelimit.init_app`` (Redis storage, errors swallowed); no default
# limits: the login form and the demo service declare theirs.
limiter = Limiter(key_func=get_remote_address)


def configure_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout and explicit BEGIN for SQLite.

    pysqlite's own transaction handling defers BEGIN until the first write, which makes a
    read-then-write transaction fail with "database is locked" instead of waiting. We take
    over BEGIN so that ``write_transaction()`` can open ``BEGIN IMMEDIATE``: the write lock is
    taken up front and concurrent writers queue on the busy timeout.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Only takes on a new, empty file (before its first table); migration 0010 sets it up
        # on an existing one. Pruning runs then gives the space back (``console.retention``).
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return  # e.g. a migration's VACUUM (alembic's autocommit_block): no transaction
        if conn.get_execution_options().get("sqlite_immediate"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def write_transaction() -> Connection:
    """Start a transaction that will write, so that it waits for, rather than races, writers.

    Ends any open transaction first. On SQLite this is ``BEGIN IMMEDIATE``; on PostgreSQL the
    conditional UPDATEs of the domain functions take row locks, which is enough. Returns the
    session's connection, for Core statements on the hot path.
    """
    if db.session().in_transaction():
        db.session.commit()
    if db.engine.dialect.name == "sqlite":
        return db.session.connection(execution_options={"sqlite_immediate": True})
    return db.session.connection()


def changed_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE changed: what a conditional transition reads to know whether it
    won. ``Session.execute`` is typed as returning ``Result``, which hides the ``rowcount``
    of the ``CursorResult`` an UPDATE gives."""
    return cast("CursorResult[Any]", result).rowcount
