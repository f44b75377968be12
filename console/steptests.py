"""Testing steps from the editor ("Test this step", "Test up to here").

The web process only records ``StepTest`` rows and enqueues them on the test queue; a worker
executes them (``workers.steptest``). A test sees the sample input (or a past run's input) and,
as ``ctx.steps``, the outputs of the earlier steps: their last completed tests, the same chain's
tests, or a past run's steps. ``resume_data`` given for a step that suspends or re-runs is what
later steps see as ``ctx.steps[name].resume_data``. A test's status moves queued → running →
completed | failed, each change one conditional UPDATE.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis
from sqlalchemy import delete, select, update

from .errors import NotFound
from .extensions import changed_rows, db, write_transaction
from .models import Run, StepRun, StepTest, Workflow
from .queueing import enqueue_step_test, enqueue_step_test_chain
from .runs import input_problems
from .timeutil import utcnow

FINISHED = ("completed", "failed")
KEEP_TESTS = 10  # finished tests kept per step (the last completed one is always kept)
# The key of ``StepTest.steps`` that holds the earlier steps' resume_data: a step name cannot
# start with "@", so it never clashes with one.
RESUME = "@resume_data"


def run_results(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """A past run's step outputs and resume_data by step name (the steps it reached)."""
    outputs: dict[str, Any] = {}
    resume: dict[str, Any] = {}
    rows = db.session.scalars(
        select(StepRun).where(StepRun.run_id == run.id).order_by(StepRun.position)
    )
    for row in rows:
        if row.status in ("completed", "suspended") or row.output is not None:
            outputs[row.name] = row.output
        if row.resume_data is not None:
            resume[row.name] = row.resume_data
    return outputs, resume


def recent_runs(workflow: Workflow, limit: int = 10) -> list[Run]:
    """The runs a test can take its input and earlier outputs from, newest first."""
    return list(
        db.session.scalars(
            select(Run)
            .where(Run.workflow_id == workflow.id)
            .order_by(Run.created_at.desc(), Run.id.desc())
            .limit(limit)
        )
    )


def last_resume_data(workflow_id: int, names: list[str]) -> dict[str, Any]:
    """The resume_data each named step's last completed test was given, where it had one."""
    found: dict[str, Any] = {}
    for name in names:
        test = last_completed(workflow_id, name)
        if test is not None and (test.step or {}).get("resume_data") is not None:
            found[name] = test.step["resume_data"]
    return found


def last_completed(workflow_id: int, name: str) -> StepTest | None:
    return db.session.scalar(
        select(StepTest)
        .where(
            StepTest.workflow_id == workflow_id,
            StepTest.step_name == name,
            StepTest.status == "completed",
        )
        .order_by(StepTest.created_at.desc(), StepTest.id.desc())
        .limit(1)
    )


def workflow_sample(workflow_id: int) -> Any:
    """The input the workflow's last step test used, if any: the editor's one sample input."""
    return db.session.scalar(
        select(StepTest.input)
        .where(StepTest.workflow_id == workflow_id)
        .order_by(StepTest.created_at.desc(), StepTest.id.desc())
        .limit(1)
    )


def last_outputs(workflow_id: int, names: list[str]) -> dict[str, Any]:
    """The output of each named step's last completed test, for those that have one."""
    outputs: dict[str, Any] = {}
    for name in names:
        row = last_completed(workflow_id, name)
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
    resume: dict[str, Any] | None = None,
    run: Run | None = None,
) -> StepTest:
    """Record a test of one step of ``definition`` and put it on the test queue. ``resume``
    holds resume_data by step name (this step's is kept with its test); with ``run``, the
    earlier steps' outputs and resume_data come from that run."""
    steps = definition.get("steps") or []
    position = _position(steps, step_name)
    earlier = [s["name"] for s in steps[:position]]
    resume = dict(resume or {})
    if run is not None:
        outputs, from_run = run_results(run)
        outputs = {name: outputs[name] for name in earlier if name in outputs}
        source = f"run {run.id}"
    else:
        outputs, from_run = (
            last_outputs(workflow.id, earlier),
            last_resume_data(workflow.id, earlier),
        )
        source = "its last completed test"
    for name, value in from_run.items():
        resume.setdefault(name, value)
    notes = [
        f"Step {name!r} has no output in {source}, so ctx.steps has no {name!r}: "
        "test it first, or use “Test up to here”."
        for name in earlier
        if name not in outputs
    ]
    if run is not None:
        notes.insert(0, f"Input, earlier outputs and resume_data from run {run.id}.")
    notes += _input_notes(definition, sample_input)
    outputs[RESUME] = {name: resume[name] for name in earlier if name in resume}
    test = _new_test(workflow, steps[position], sample_input, outputs, notes, user, resume)
    _enqueue([test], lambda: enqueue_step_test(test.id))
    return test


def start_chain(
    workflow: Workflow,
    definition: dict[str, Any],
    step_name: str,
    sample_input: Any,
    user: str | None,
    resume: dict[str, Any] | None = None,
) -> list[StepTest]:
    """ "Test up to here": a test of every step up to ``step_name``, executed in order by one
    job, each step's output (and given resume_data) feeding the next step's ``ctx.steps``."""
    steps = definition.get("steps") or []
    notes = _input_notes(definition, sample_input)
    tests = [
        _new_test(workflow, step, sample_input, {}, list(notes), user, resume or {})
        for step in steps[: _position(steps, step_name) + 1]
    ]
    _enqueue(tests, lambda: enqueue_step_test_chain([test.id for test in tests]))
    return tests


def _position(steps: list[dict[str, Any]], step_name: str) -> int:
    for position, step in enumerate(steps):
        if step["name"] == step_name:
            return position
    raise NotFound(f"No step named {step_name!r}")


def _enqueue(tests: list[StepTest], enqueue: Callable[[], Any]) -> None:
    """Commit the queued tests and put them on the test queue; without Redis they fail at
    once, saying why, instead of waiting for a worker that will never see them."""
    db.session.commit()
    try:
        enqueue()
    except redis.RedisError as exc:
        for test in tests:
            finish_step_test(
                test.id, "failed", error=f"Could not reach the test queue: {exc}", claimed=False
            )
            db.session.refresh(test)


def suspends(step: dict[str, Any]) -> bool:
    """Whether a step may suspend or re-run: its test then takes the resume_data a run would."""
    code = step.get("code") or ""
    return "ctx.flow.suspend" in code or reruns(step)


def reruns(step: dict[str, Any]) -> bool:
    """Whether a step may re-run itself: its test then takes the callback its link would."""
    return "ctx.flow.rerun" in (step.get("code") or "")


def _input_notes(definition: dict[str, Any], sample_input: Any) -> list[str]:
    return [
        f"The sample input does not match the input schema at {problem['path']}: "
        f"{problem['message']} (a real run would refuse it)."
        for problem in input_problems(definition.get("input_schema"), sample_input)
    ]


def _new_test(
    workflow: Workflow,
    step: dict[str, Any],
    sample_input: Any,
    outputs: dict[str, Any],
    notes: list[str],
    user: str | None,
    resume: dict[str, Any],
) -> StepTest:
    """A queued test added to the session (the caller commits)."""
    recorded = dict(step)
    if resume.get(step["name"]) is not None:
        recorded["resume_data"] = resume[step["name"]]
    test = StepTest(
        workflow_id=workflow.id,
        step_name=step["name"],
        status="queued",
        step=recorded,
        input=sample_input,
        steps=outputs,
        notes=notes,
        created_by=user,
    )
    write_transaction()
    _prune(workflow.id, step["name"])
    db.session.add(test)
    db.session.flush()
    return test


def feed_step_test(test_id: str, steps: dict[str, Any]) -> None:
    """Hand a chained test the outputs of the chain's earlier tests before it executes."""
    write_transaction()
    db.session.execute(
        update(StepTest)
        .where(StepTest.id == test_id, StepTest.status == "queued")
        .values(steps=steps)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


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
