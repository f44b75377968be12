"""The DBOS side of ``peers.dbos``: a child process that ``bench.peers`` starts and drives.

``python -m bench.dbos_peer DB_PATH`` launches DBOS Transact on a fresh SQLite system
database with the console's own connection settings (WAL, ``synchronous=NORMAL``,
``busy_timeout=30000``, foreign keys on; writers open ``BEGIN IMMEDIATE`` as DBOS's own
SQLite engine does), prints ``{"ready": ..., "version": ...}`` and then answers one line of
JSON per command read on stdin:

* ``run N``: N sequential executions of a workflow of 10 no-op ``@DBOS.step`` steps, each
  with a new workflow id; answers the seconds of each execution;
* ``replay N``: N re-executions by id of a workflow that already completed (DBOS returns
  the recorded result); answers the seconds of each;
* ``quit``.

It imports nothing of the console, so that the process holds DBOS and nothing else.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from importlib.metadata import version
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, SetWorkflowID
from sqlalchemy import event

STEPS = 10
SETTINGS = {
    "journal_mode": "WAL",
    "synchronous": "NORMAL",
    "busy_timeout": 30000,
    "foreign_keys": "ON",
    "isolation_level": "IMMEDIATE (DBOS's own SQLite engine setting)",
}


def system_engine(path: str) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def settings(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


@DBOS.step()
def noop_step() -> None:
    return None


@DBOS.workflow()
def ten_noop_steps() -> int:
    for _ in range(STEPS):
        noop_step()
    return STEPS


def timed_runs(count: int, workflow_id: str | None = None) -> list[float]:
    samples = []
    for _ in range(count):
        with SetWorkflowID(workflow_id or str(uuid.uuid4())):
            started = time.perf_counter()
            ten_noop_steps()
            samples.append(time.perf_counter() - started)
    return samples


def main(argv: list[str]) -> int:
    path = argv[0]
    config: Any = {
        "name": "bench-peer",
        "system_database_url": f"sqlite:///{path}",
        "system_database_engine": system_engine(path),
        "auto_upgrade": False,
        "enable_otlp": False,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    done_id = str(uuid.uuid4())
    timed_runs(1, done_id)  # the completed workflow that ``replay`` re-executes
    timed_runs(5)  # warm-up
    print(json.dumps({"ready": True, "version": version("dbos"), "settings": SETTINGS}))
    sys.stdout.flush()
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "run":
            answer: dict[str, Any] = {"seconds": timed_runs(int(arg))}
        elif command == "replay":
            answer = {"seconds": timed_runs(int(arg), done_id)}
        elif command == "quit":
            break
        else:
            answer = {"error": f"unknown command {line!r}"}
        print(json.dumps(answer))
        sys.stdout.flush()
    DBOS.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
