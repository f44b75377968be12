"""The reconciler makes Redis agree with the database, without duplicating work."""

from __future__ import annotations

from datetime import timedelta

from rq import Queue
from sqlalchemy import update

from console import runs as domain
from console.extensions import db
from console.models import Run
from console.timeutil import utcnow
from workers import reconciler


def age(run_id: str, seconds: float) -> None:
    db.session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(enqueued_at=utcnow() - timedelta(seconds=seconds))
    )
    db.session.commit()


def test_a_queued_run_is_left_alone_and_a_lost_one_is_requeued(app, define, redis_conn):
    wf = define("waiting", [("a", "def run(ctx):\n    return 1")])
    run, _ = domain.start_run(wf, {})
    queue = Queue(app.config["RUN_QUEUE"], connection=redis_conn)
    age(run.id, 60)
    assert reconciler.requeue_lost_runs() == 0  # its job is still waiting in the queue
    assert queue.count == 1
    redis_conn.flushall()
    assert reconciler.requeue_lost_runs() == 1  # the job is gone: enqueue it again
    assert queue.count == 1
    assert reconciler.requeue_lost_runs() == 0  # just enqueued: not again
    age(run.id, 60)
    assert reconciler.requeue_lost_runs() == 0  # and still not while it waits
    assert queue.count == 1


def test_a_due_timer_is_delivered_once(app, define, redis_conn, work):
    wf = define(
        "retrying",
        [
            {
                "name": "a",
                "code": "def run(ctx):\n    raise ValueError()",
                "retries": 1,
                "retry_delay": 60,
            }
        ],
    )
    run, _ = domain.start_run(wf, {})
    work(until=lambda: db.session.get(Run, run.id).status == "sleeping")
    queue = Queue(app.config["RUN_QUEUE"], connection=redis_conn)
    assert reconciler.wake_due_timers() == 0  # not due yet
    # Due a second ago; its last enqueue (the start) was before that.
    db.session.execute(
        update(Run)
        .where(Run.id == run.id)
        .values(
            wake_at=utcnow() - timedelta(seconds=1), enqueued_at=utcnow() - timedelta(seconds=10)
        )
    )
    db.session.commit()
    assert reconciler.wake_due_timers() == 1
    assert reconciler.wake_due_timers() == 0
    assert queue.count == 1


def test_a_recorded_but_unapplied_link_decision_is_applied(app, define, work, redis_conn):
    """The web process died between recording a resume and applying it to the run."""
    from console.models import Waitpoint

    wf = define(
        "approval",
        [
            ("ask", "def run(ctx):\n    ctx.flow.suspend(timeout=3600)\n    return 1"),
            ("after", "def run(ctx):\n    return ctx.steps.ask.resume_data"),
        ],
    )
    run, _ = domain.start_run(wf, {})
    work(until=lambda: db.session.get(Run, run.id).status == "suspended")
    assert reconciler.time_out_suspensions() == 0  # nothing decided, not due
    db.session.execute(
        update(Waitpoint).where(Waitpoint.run_id == run.id).values(state="resumed", payload="ok")
    )
    db.session.commit()
    assert reconciler.time_out_suspensions() == 1
    work()
    assert db.session.get(Run, run.id).output == "ok"
    assert reconciler.time_out_suspensions() == 0
