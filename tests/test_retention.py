"""Retention (docs/operations.md#retention): ``flask runs prune`` with and without ``--dry-run``,
the archive read back and recovered, non-terminal runs kept, every row of a pruned run gone but
its schedule fire kept, the policy the scheduler applies, and the SQLite file shrinking."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from console import retention
from console import runs as domain
from console.auth import create_user
from console.extensions import db
from console.models import (
    LogLine,
    Run,
    RunEvent,
    Schedule,
    ScheduleFire,
    StepRun,
    TaskResult,
    Waitpoint,
)
from console.timeutil import utcnow
from tests.conftest import run_status
from tests.support import code

TASKS = code("ctx.logger.info('working')\nreturn ctx.task('fetch', lambda: {'n': ctx.input['n']})")


def age(run_id: str, days: float) -> None:
    """Make a run look as if it was created and finished ``days`` ago."""
    then = utcnow() - timedelta(days=days)
    db.session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(created_at=then, finished_at=then if run_status(run_id) != "suspended" else None)
    )
    db.session.commit()


def count(model: Any, run_id: str) -> int:
    column = model.id if model is Run else model.run_id
    return int(db.session.scalar(select(func.count()).where(column == run_id)))


def test_prune_dry_run_then_for_real_with_the_archive_recovered(app, define, work, runner):
    workflow = define("fetcher", [("one", TASKS)])
    asker = define("asker", [("ask", code("ctx.flow.suspend(timeout=86400 * 30)"))])
    old, recent, waiting = (
        domain.start_run(w, i)[0].id
        for w, i in ((workflow, {"n": 1}), (workflow, {"n": 2}), (asker, {}))
    )
    work(until=lambda: run_status(waiting) == "suspended" and run_status(recent) != "pending")
    schedule = Schedule(workflow_id=workflow.id, name="daily", cron="0 9 * * *")
    db.session.add(schedule)
    db.session.flush()
    db.session.add(
        ScheduleFire(schedule_id=schedule.id, fire_at=utcnow(), status="started", run_id=old)
    )
    db.session.commit()
    age(old, 40)
    age(waiting, 40)  # as old, but suspended: never pruned

    dry = runner.invoke(args=["runs", "prune", "--older-than", "30", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"Would delete run {old} (fetcher" in dry.output
    assert "Would delete 1 run(s)" in dry.output
    assert count(Run, old) == 1 and not Path(app.config["ARCHIVE_DIR"]).exists()

    done = runner.invoke(args=["runs", "prune", "--older-than", "30"])
    assert done.exit_code == 0, done.output
    assert f"Deleted run {old}" in done.output and "Deleted 1 run(s)" in done.output
    db.session.expire_all()
    for model in (Run, StepRun, TaskResult, LogLine, Waitpoint, RunEvent):
        assert count(model, old) == 0, model
    assert run_status(recent) == "completed" and run_status(waiting) == "suspended"
    fire = db.session.scalar(select(ScheduleFire))
    assert fire.run_id is None and fire.status == "started"  # the history stays

    created = (utcnow() - timedelta(days=40)).strftime("%Y-%m-%d")
    path = Path(app.config["ARCHIVE_DIR"]) / created / f"{old}.json.gz"
    assert str(path) in done.output
    journal = retention.read_archive(path)
    assert journal["run"]["id"] == old and journal["workflow"] == "fetcher"
    assert any(e["type"] == "task" and e["result"] == {"n": 1} for e in journal["entries"])
    user, _ = create_user("editor@example.com", "editor", "s3cret-pass")
    recovered = domain.recover_journal(journal, user)[0].id
    work(until=lambda: run_status(recovered) == "completed")
    assert db.session.get(Run, recovered).output == {"n": 1}

    # The CLI takes the gzipped file as it is.
    again = runner.invoke(args=["runs", "recover", str(path)])
    assert again.exit_code == 0, again.output
    assert "Started run" in again.output


def test_no_archive_and_one_workflow(app, define, work, runner):
    first = define("first", [("one", code("return 1"))])
    second = define("second", [("one", code("return 2"))])
    a, b = domain.start_run(first, {})[0].id, domain.start_run(second, {})[0].id
    work()
    age(a, 5)
    age(b, 5)
    answer = runner.invoke(
        args=["runs", "prune", "--older-than", "1", "--workflow", "second", "--no-archive"]
    )
    assert answer.exit_code == 0, answer.output
    assert count(Run, b) == 0 and count(Run, a) == 1
    assert not Path(app.config["ARCHIVE_DIR"]).exists()


def test_the_scheduler_applies_each_workflows_policy(app, define, work):
    app.config["RUN_RETENTION_DAYS"] = 30
    kept_long = define("kept_long", [("one", code("return 1"))], retention_days=90)
    default = define("default", [("one", code("return 1"))])
    short = define("short", [("one", code("return 1"))], retention_days=1)
    runs = {w.name: domain.start_run(w, {})[0].id for w in (kept_long, default, short)}
    work()
    for run_id in runs.values():
        age(run_id, 40)
    assert retention.prune_by_policy() == 2
    db.session.expire_all()
    assert {name: count(Run, run_id) for name, run_id in runs.items()} == {
        "kept_long": 1,
        "default": 0,
        "short": 0,
    }


def test_retention_days_is_validated(app, api):
    body = {"name": "r", "steps": [{"name": "one", "code": code()}], "retention_days": 0}
    answer = api.put("/api/workflows/r", json=body)
    assert answer.status_code == 422
    assert [d["path"] for d in answer.json["details"]] == ["/retention_days"]


@pytest.mark.slow
def test_the_sqlite_file_shrinks_after_a_large_prune(app, define, work, runner, backend):
    if backend != "sqlite":
        pytest.skip("the file of a SQLite database")
    workflow = define("bulky", [("one", code("return 1"))])
    version_id = workflow.latest_version.id
    then = utcnow() - timedelta(days=100)
    ids = [f"0{n:025d}" for n in range(3000)]
    db.session.execute(
        insert(Run),
        [
            {
                "id": i,
                "workflow_id": workflow.id,
                "version_id": version_id,
                "status": "completed",
                "created_at": then,
                "finished_at": then,
                "updated_at": then,
                "input": {},
            }
            for i in ids
        ],
    )
    db.session.execute(
        insert(LogLine),
        [{"run_id": i, "message": "x" * 2000, "created_at": then} for i in ids for _ in range(3)],
    )
    db.session.commit()
    retention.give_back_space()
    path = Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
    before = os.path.getsize(path)
    assert before > 15_000_000
    answer = runner.invoke(args=["runs", "prune", "--older-than", "30", "--no-archive"])
    assert "Deleted 3000 run(s)" in answer.output, answer.output
    after = os.path.getsize(path)
    assert after < before / 5, (before, after)


def test_migration_0010_from_0009_sets_up_the_operations(app_env, backend):
    from tests.support import run_sql
    from tests.test_processes import flask

    assert flask(app_env, "db", "upgrade", "0009").returncode == 0
    run_sql(
        app_env,
        "INSERT INTO workflows (name, title, description, created_at, updated_at, "
        "draft_revision) VALUES ('old', '', '', '2026-01-01', '2026-01-01', 0)",
        "INSERT INTO schedules (workflow_id, name, cron, timezone, enabled, missed, created_at, "
        "updated_at) SELECT id, 'daily', '0 9 * * *', 'UTC', true, 'latest', '2026-01-01', "
        "'2026-01-01' FROM workflows",
    )
    upgraded = flask(app_env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert run_sql(app_env, "SELECT overlap FROM schedules") == "['allow']"
    assert run_sql(app_env, "SELECT concurrency FROM workflows") == "[None]"
    if backend == "sqlite":
        assert run_sql(app_env, "PRAGMA auto_vacuum") == "[2]"  # incremental
