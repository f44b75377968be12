"""Testing one step from the editor ("Test this step").

The web process only records a ``StepTest`` and enqueues it on the test queue; a worker
executes it (``workers.steptest``). A test sees the sample input and, as ``ctx.steps``, the
outputs of the earlier steps' last completed tests. Its status moves queued → running →
completed | failed, each change one conditional UPDATE.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis
from sqlalchemy import delete, select, update

from .errors import NotFound
from .extensions import changed_rows, db, write_transaction
from .models import StepTest, Workflow
from .queueing import enqueue_step_test
from .runs import input_problems
from .timeutil import utcnow

FINISHED = ("completed", "failed")
KEEP_TESTS = 10  # finished tests kept per step (the last completed one is always kept)


def last_outputs(workflow_id: int, names: list[str]) -> dict[str, Any]:
    """The output of each named step's last completed test, for those that have one."""
    outputs: dict[str, Any] = {}
    for name in names:
        row = db.session.scalar(
            select(StepTest)
            .where(
                StepTest.workflow_id == workflow_id,
                StepTest.step_name == name,
                StepTest.status == "completed",
            )
            .order_by(StepTest.created_at.desc(), StepTest.id.desc())
            .limit(1)
        )
        if row is not None:
            outputs[name] = row.output
    return outputs


def last_test(workflow_id: int, step_name: str) -> StepTest | None:
    return db.session.scalar(
        select(StepTest)
        .where(StepTest.workflow_id == workflow_id, StepTest.step_name == step_name)
        .order_by(StepTest.created_at.desc(), StepTest.id.desc())
        .limit(1)
    )


def overdue(test: StepTest) -> bool:
    """Unfinished well past its timeout: its worker stopped, or no worker listens on the
    test queue. The editor stops polling it then."""
    if test.status in FINISHED:
        return False
    limit = float((test.step or {}).get("timeout") or 900) + 120
    return utcnow() - test.created_at > timedelta(seconds=limit)


def get_step_test(workflow: Workflow, test_id: str) -> StepTest:
    test = db.session.get(StepTest, test_id)
    if test is None or test.workflow_id != workflow.id:
        raise NotFound(f"No step test {test_id!r}")
    return test


def start_step_test(
    workflow: Workflow,
    definition: dict[str, Any],
    step_name: str,
    sample_input: Any,
    user: str | None,
) -> StepTest:
    """Record a test of one step of ``definition`` and put it on the test queue."""
    steps = definition.get("steps") or []
    names = [s["name"] for s in steps]
    if step_name not in names:
        raise NotFound(f"No step named {step_name!r}")
    position = names.index(step_name)
    earlier = names[:position]
    outputs = last_outputs(workflow.id, earlier)
    notes = [
        f"Step {name!r} has no completed test yet, so ctx.steps has no {name!r}: "
        "test it first to pass its output on."
        for name in earlier
        if name not in outputs
    ]
    for problem in input_problems(definition.get("input_schema"), sample_input):
        notes.append(
            f"The sample input does not match the input schema at {problem['path']}: "
            f"{problem['message']} (a real run would refuse it)."
        )
    test = StepTest(
        workflow_id=workflow.id,
        step_name=step_name,
        status="queued",
        step=dict(steps[position]),
        input=sample_input,
        steps=outputs,
        notes=notes,
        created_by=user,
    )
    write_transaction()
    _prune(workflow.id, step_name)
    db.session.add(test)
    db.session.commit()
    try:
        enqueue_step_test(test.id)
    except redis.RedisError as exc:
        finish_step_test(
            test.id, "failed", error=f"Could not reach the test queue: {exc}", claimed=False
        )
        db.session.refresh(test)
    return test


def _prune(workflow_id: int, step_name: str) -> None:
    """Drop a step's finished tests beyond the newest ``KEEP_TESTS``, except its last
    completed one (the output later steps' tests receive). In the caller's transaction."""
    mine = (StepTest.workflow_id == workflow_id, StepTest.step_name == step_name)
    old = list(
        db.session.scalars(
            select(StepTest.id)
            .where(*mine, StepTest.status.in_(FINISHED))
            .order_by(StepTest.id.desc())
            .offset(KEEP_TESTS - 1)  # room for the test being added
        )
    )
    kept = db.session.scalar(
        select(StepTest.id)
        .where(*mine, StepTest.status == "completed")
        .order_by(StepTest.created_at.desc(), StepTest.id.desc())
        .limit(1)
    )
    doomed = [test_id for test_id in old if test_id != kept]
    if doomed:
        db.session.execute(
            delete(StepTest)
            .where(StepTest.id.in_(doomed))
            .execution_options(synchronize_session=False)
        )


def claim_step_test(test_id: str) -> bool:
    write_transaction()
    result = db.session.execute(
        update(StepTest)
        .where(StepTest.id == test_id, StepTest.status == "queued")
        .values(status="running")
        .execution_options(synchronize_session=False)
    )
    claimed = changed_rows(result)
    db.session.commit()
    return bool(claimed)


def finish_step_test(
    test_id: str,
    status: str,
    *,
    output: Any = None,
    logs: list[dict[str, Any]] | None = None,
    notes: list[str] | None = None,
    error: str | None = None,
    duration_ms: int | None = None,
    claimed: bool = True,
) -> bool:
    if status not in FINISHED:
        raise ValueError(f"a test finishes as completed or failed, not {status!r}")
    values: dict[str, Any] = {
        "status": status,
        "output": output,
        "logs": logs or [],
        "error": error,
        "duration_ms": duration_ms,
        "finished_at": utcnow(),
    }
    if notes is not None:
        values["notes"] = notes
    write_transaction()
    result = db.session.execute(
        update(StepTest)
        .where(StepTest.id == test_id, StepTest.status == ("running" if claimed else "queued"))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    done = changed_rows(result)
    db.session.commit()
    return bool(done)
