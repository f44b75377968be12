"""Poison runs (docs/commands.md ``MAX_STEP_RECOVERIES``): a run whose worker dies again and
again during one step fails instead of being replayed forever. The count lives in the
database, is taken with the claim that takes the run over, and starts again when the step
records anything. Real worker processes killed with kill -9, on both databases.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from console import runs as domain
from console.extensions import db
from console.models import Run, StepRun
from console.timeutil import utcnow
from tests.support import run_sql
from tests.test_durability import Waiter, get_run, query, side_effects, start
from tests.test_processes import flask

# The step notes each execution in the side-effect file; it hangs on the executions listed in
# ``input["hang"]`` (1-based), as a step whose worker dies does, and otherwise returns.
HANGING = """\
import time

def run(ctx):
    with open(ctx.input["log"], "a") as f:
        f.write("enter\\n")
    with open(ctx.input["log"]) as f:
        execution = f.read().split().count("enter")
    if execution in ctx.input["hang"]:
        while True:
            time.sleep(0.2)
    return execution
"""


def workflow(define, name):
    define(
        name,
        [
            {"name": "first", "code": "def run(ctx):\n    return 1"},
            {"name": "hang", "code": HANGING, "timeout": 600, "retries": 2},
            {"name": "last", "code": "def run(ctx):\n    return ctx.steps.hang.output"},
        ],
    )


def recorded(run_id):
    return query(select(Run.recoveries, Run.replays).where(Run.id == run_id))[0]


def kill_during_the_step(processes, wait, log, times):
    """Start a worker, wait until it executes the step, kill -9 it; ``times`` times."""
    for kill in range(1, times + 1):
        worker = processes.worker()
        wait(lambda n=kill: side_effects(log).count("enter") == n, f"execution {kill}")
        processes.kill_tree(worker)


@pytest.mark.slow
def test_a_run_whose_worker_dies_three_times_in_a_step_fails(app, define, api, processes, tmp_path):
    wait = Waiter(processes)
    log = tmp_path / "effects.txt"
    workflow(define, "poison")
    processes.scheduler()
    run_id = start(api, "poison", log=str(log), hang=[1, 2, 3, 4])

    kill_during_the_step(processes, wait, log, 3)
    processes.worker()
    wait.status(run_id, "failed")
    out = processes.output()
    message = "the worker died 3 times while step hang was executing"
    assert get_run(run_id).error == message, out
    steps = {
        r.name: r
        for r in query(
            select(StepRun.name, StepRun.status, StepRun.error, StepRun.attempts).where(
                StepRun.run_id == run_id
            )
        )
    }
    assert steps["first"].status == "completed" and "last" not in steps, out
    # Failed without a retry (it has two) and without a fourth execution.
    assert (steps["hang"].status, steps["hang"].error) == ("failed", message), out
    assert steps["hang"].attempts == 1, out
    assert side_effects(log).count("enter") == 3, out
    assert recorded(run_id) == (3, 3), out


@pytest.mark.slow
def test_a_run_whose_worker_died_once_completes_and_its_count_starts_again(
    app, define, api, processes, tmp_path
):
    wait = Waiter(processes)
    log = tmp_path / "effects.txt"
    workflow(define, "once")
    processes.scheduler()
    run_id = start(api, "once", log=str(log), hang=[1])

    kill_during_the_step(processes, wait, log, 1)
    processes.worker()
    wait.status(run_id)
    out = processes.output()
    assert get_run(run_id).output == 2, out  # the replay was the step's second execution
    assert recorded(run_id) == (0, 1), out  # its checkpoint started the count again


def test_the_count_is_taken_with_the_takeover_and_reset_by_the_step(app, define):
    wf = define("count", [("x", "def run(ctx):\n    return 1")])
    run, _ = domain.start_run(wf, {})
    run_id = run.id

    def expire():
        db.session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()

    first = domain.take_run(run_id, "worker-a")
    assert first is not None and first.recoveries == 0  # a pending run: no takeover
    assert domain.take_run(run_id, "worker-b") is None
    for n in (1, 2):
        expire()
        claim = domain.take_run(run_id, f"worker-{n}")
        assert claim is not None and claim.recoveries == n
        assert not domain.too_many_recoveries(claim)
    expire()
    claim = domain.take_run(run_id, "worker-3")
    assert claim is not None and domain.too_many_recoveries(claim)
    app.config["MAX_STEP_RECOVERIES"] = 0  # no limit
    assert not domain.too_many_recoveries(claim)
    now = utcnow()
    outcome = domain.StepOutcome(
        name="x", position=0, status="completed", started_at=now, finished_at=now, attempts=1
    )
    assert domain.record_step_completed(claim, outcome, 1, []) == "running"
    assert db.session.scalar(select(Run.recoveries).where(Run.id == run_id)) == 0
    # A shutdown gives the run back: the next claim is no takeover.
    assert domain.hand_back_run(claim)
    assert db.session.scalar(select(Run.status).where(Run.id == run_id)) == "pending"
    again = domain.take_run(run_id, "worker-4")
    assert again is not None and again.recoveries == 0
    db.session.commit()


def test_migration_0007_gives_existing_runs_no_recoveries(app_env):
    assert flask(app_env, "db", "upgrade", "0006").returncode == 0
    run_sql(
        app_env,
        "INSERT INTO workflows (id, name, title, description, created_at, updated_at, "
        "draft_revision, webhook_nonce) VALUES (1, 'old', '', '', '2026-01-01', '2026-01-01', "
        "0, 'n')",
        "INSERT INTO workflow_versions (id, workflow_id, number, label, definition, "
        "definition_hash, note, published_at) VALUES (1, 1, 1, 'v1', '{}', 'h', '', "
        "'2026-01-01')",
        "INSERT INTO runs (id, workflow_id, version_id, status, trigger, input, compute_ms, "
        "current_step, step_count, created_at, updated_at, replays) VALUES ('r1', 1, 1, "
        "'running', 'manual', '{}', 0, 0, 1, '2026-01-01', '2026-01-01', 2)",
    )
    upgraded = flask(app_env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert run_sql(app_env, "SELECT recoveries FROM runs") == "[0]"
    downgraded = flask(app_env, "db", "downgrade", "0006")
    assert downgraded.returncode == 0, downgraded.stderr
