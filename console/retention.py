"""Retention (docs/operations.md#retention): finished runs older than a policy are deleted, in
batches, each one's journal written gzipped to the archive first.

The policy is a workflow's ``retention_days``, else ``RUN_RETENTION_DAYS``; without either a
workflow's runs are kept forever. ``flask runs prune`` gives the age by hand. Only finished
runs (completed, failed, canceled) are ever deleted, and with them every row they own; a
schedule's fires stay, without their run. On SQLite the freed pages are given back to the
file system (incremental auto-vacuum, set up by migration 0010).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import delete, select, update

from .extensions import db, write_transaction
from .models import (
    TERMINAL,
    LogLine,
    OutboxMessage,
    Run,
    RunEvent,
    ScheduleFire,
    StepRun,
    TaskResult,
    Waitpoint,
    Workflow,
)
from .timeutil import utcnow

OWNED = (StepRun, TaskResult, LogLine, Waitpoint, OutboxMessage, RunEvent)


@dataclass(frozen=True)
class Pruned:
    id: str
    workflow: str
    finished_at: datetime
    archive: Path | None


def archive_path(run_id: str, created_at: datetime) -> Path:
    """``ARCHIVE_DIR/<YYYY-MM-DD of the run's creation>/<run id>.json.gz``."""
    return Path(current_app.config["ARCHIVE_DIR"]) / f"{created_at:%Y-%m-%d}" / f"{run_id}.json.gz"


def write_archive(run_id: str, created_at: datetime) -> Path:
    """The run's journal, gzipped, written whole (a temporary file renamed) before any
    deletion, so that a crash never leaves a run deleted without its archive."""
    from .runs import build_journal

    path = archive_path(run_id, created_at)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(build_journal(run_id), separators=(",", ":")).encode()
    partial = path.with_suffix(".partial")
    with gzip.open(partial, "wb") as handle:
        handle.write(body)
    os.replace(partial, path)
    return path


def read_archive(path: str | Path) -> Any:
    with gzip.open(path, "rb") as handle:
        return json.loads(handle.read())


def _policies(days: int | None, workflow: str | None) -> list[tuple[int, str, datetime]]:
    """(workflow id, name, cutoff) for every workflow whose runs may be pruned."""
    query = select(Workflow.id, Workflow.name, Workflow.retention_days)
    if workflow is not None:
        query = query.where(Workflow.name == workflow)
    default = current_app.config.get("RUN_RETENTION_DAYS")
    now = utcnow()
    found = []
    for row in db.session.execute(query.order_by(Workflow.id)):
        keep = days if days is not None else (row.retention_days or default)
        if keep:
            found.append((row.id, row.name, now - timedelta(days=keep)))
    return found


def _batch(workflow_id: int, cutoff: datetime, size: int, after: str | None) -> list[Any]:
    query = select(Run.id, Run.created_at, Run.finished_at).where(
        Run.workflow_id == workflow_id,
        Run.status.in_(tuple(TERMINAL)),
        Run.finished_at < cutoff,
    )
    if after is not None:  # a dry run deletes nothing: page on by id
        query = query.where(Run.id > after)
    return list(db.session.execute(query.order_by(Run.id).limit(size)))


def delete_runs(run_ids: list[str]) -> None:
    """Every row of these runs, in one transaction; their fires keep the schedule's history."""
    write_transaction()
    db.session.execute(
        update(ScheduleFire).where(ScheduleFire.run_id.in_(run_ids)).values(run_id=None)
    )
    for model in OWNED:
        db.session.execute(delete(model).where(model.run_id.in_(run_ids)))
    db.session.execute(
        delete(Run)
        .where(Run.id.in_(run_ids), Run.status.in_(tuple(TERMINAL)))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def prune(
    days: int | None = None,
    *,
    workflow: str | None = None,
    dry_run: bool = False,
    archive: bool = True,
    max_batches: int | None = None,
) -> Iterator[Pruned]:
    """Prune finished runs older than ``days`` (None: each workflow's policy), batch by batch
    (``PRUNE_BATCH`` runs; at most ``max_batches`` per workflow), yielding each run deleted
    (or that would be, ``dry_run``)."""
    size = int(current_app.config["PRUNE_BATCH"])
    total = 0
    for workflow_id, name, cutoff in _policies(days, workflow):
        after, batches = None, 0
        while max_batches is None or batches < max_batches:
            rows = _batch(workflow_id, cutoff, size, after)
            db.session.commit()
            if not rows:
                break
            batches += 1
            total += 1
            done = []
            for row in rows:
                path = None
                if archive and not dry_run:
                    path = write_archive(row.id, row.created_at)
                    db.session.commit()
                elif archive:
                    path = archive_path(row.id, row.created_at)
                done.append(Pruned(row.id, name, row.finished_at, path))
            if dry_run:
                after = rows[-1].id
            else:
                delete_runs([p.id for p in done])
            yield from done
    if total and not dry_run:
        give_back_space()


def give_back_space() -> None:
    """SQLite: return the freed pages to the file system (the file shrinks)."""
    if db.engine.dialect.name != "sqlite":
        return
    # The driver's own connection, in autocommit (``configure_sqlite``): no BEGIN around it.
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        # executescript steps the pragma to its end; execute() would free a single page.
        cursor.executescript("PRAGMA incremental_vacuum;")
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.fetchall()
        cursor.close()
    finally:
        raw.close()


def prune_by_policy() -> int:
    """The scheduler's pass: one batch per workflow of the runs past its policy."""
    if not current_app.config.get("RUN_RETENTION_DAYS") and not db.session.scalar(
        select(Workflow.id).where(Workflow.retention_days.is_not(None)).limit(1)
    ):
        db.session.commit()
        return 0
    return sum(1 for _ in prune(max_batches=1))
