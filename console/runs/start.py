"""Starting runs: the workflow and version a request names, input checks, idempotency keys,
and the pending run that a worker then advances."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from jsonschema import Draft202012Validator
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, NotFound, ValidationFailed
from ..extensions import db, write_transaction
from ..ids import new_id
from ..models import Run, StepRun, TaskResult, Workflow, WorkflowVersion
from ..queueing import enqueue_run
from ..text import text_problem
from ..timeutil import utcnow

IDEMPOTENCY_WINDOW = timedelta(hours=24)
MAX_IDEMPOTENCY_KEY = 255  # Run.idempotency_key is String(255)


def schema_problems(schema: dict, value: Any) -> list[dict[str, str]]:
    """Where ``value`` does not match the JSON schema, in the order of their paths: the one
    check of a run's input (``input_problems``) and of its output (``checkpoints``)."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        path = "/" + "/".join(str(p) for p in error.absolute_path)
        problems.append({"path": path, "message": error.message})
    return problems


def input_problems(schema: dict | None, value: Any) -> list[dict[str, str]]:
    if not isinstance(value, dict):
        return [{"path": "/", "message": "the input must be a JSON object"}]
    if not schema:
        return []
    return schema_problems(schema, value)


def get_workflow(name: str) -> Workflow:
    workflow = db.session.scalar(select(Workflow).filter_by(name=name))
    if workflow is None:
        raise NotFound(f"No workflow named {name!r}")
    return workflow


def get_version(workflow: Workflow, label: str | None) -> WorkflowVersion:
    if label is None:
        version = workflow.latest_version
        if version is None:
            raise Conflict(f"Workflow {workflow.name!r} has no published version")
        return version
    for version in workflow.live_versions:
        if version.label == label:
            return version
    raise NotFound(f"Workflow {workflow.name!r} has no version {label!r}")


def get_run(run_id: str) -> Run:
    run = db.session.get(Run, run_id)
    if run is None:
        raise NotFound(f"No run with id {run_id!r}")
    return run


def start_run(
    workflow: Workflow,
    input: Any = None,
    *,
    version: str | None = None,
    trigger: str = "manual",
    idempotency_key: str | None = None,
    user: str | None = None,
) -> tuple[Run, bool]:
    """Validate the input, record a pending run and enqueue it.

    Returns ``(run, created)``; with an ``idempotency_key`` seen in the last 24 hours the
    first run is returned and nothing is started.
    """
    input = {} if input is None else input
    pinned = get_version(workflow, version)
    if idempotency_key is not None:
        problem = (
            text_problem(idempotency_key, MAX_IDEMPOTENCY_KEY)
            if isinstance(idempotency_key, str) and idempotency_key
            else f"must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )
        if problem:
            raise ValidationFailed(
                f"idempotency_key {problem}", [{"path": "/idempotency_key", "message": problem}]
            )
        existing = _idempotent_run(workflow.id, idempotency_key)
        if existing is not None:
            return existing, False
    run = new_run(pinned, input, trigger=trigger, idempotency_key=idempotency_key, user=user)
    # Not in the read transaction above: on SQLite, upgrading it to a write fails at once
    # ("database is locked") when a worker has committed since it began.
    write_transaction()
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = _idempotent_run(workflow.id, idempotency_key)
        if existing is None:
            raise
        return existing, False
    enqueue_run(run.id)
    return run, True


def new_run(
    version: WorkflowVersion,
    input: Any,
    *,
    trigger: str,
    idempotency_key: str | None = None,
    user: str | None = None,
) -> Run:
    """A pending run of ``version``, not yet added to the session, once its input is valid
    (raises ``ValidationFailed`` with one detail per problem). ``start_run`` records and
    enqueues it; a schedule's fire records it together with its fire row."""
    problems = input_problems(version.definition.get("input_schema"), input)
    if problems:
        raise ValidationFailed("The input does not match the workflow's input schema", problems)
    _check_payload_size(input, "input")
    return Run(
        id=new_id(),
        workflow_id=version.workflow_id,
        version_id=version.id,
        status="pending",
        trigger=trigger,
        input=input,
        idempotency_key=idempotency_key,
        created_by=user,
        step_count=len(version.steps),
    )


def _idempotent_run(workflow_id: int, key: str | None) -> Run | None:
    run = db.session.scalar(select(Run).filter_by(workflow_id=workflow_id, idempotency_key=key))
    if run is None:
        return None
    if run.created_at >= utcnow() - IDEMPOTENCY_WINDOW:
        return run
    # The key is free again after the window: release it from the old run.
    db.session.execute(update(Run).where(Run.id == run.id).values(idempotency_key=None))
    db.session.commit()
    return None


def _check_payload_size(value: Any, what: str) -> None:
    limit = current_app.config["MAX_PAYLOAD_BYTES"]
    try:
        size = len(json.dumps(value, allow_nan=False))
    except ValueError:
        raise ValidationFailed(f"The {what} contains NaN or Infinity, which JSON does not allow")
    if size > limit:
        raise ValidationFailed(f"The {what} is {size} bytes; the limit is {limit}", status=413)


_AS_PENDING = {
    "output": None,
    "resume_data": None,
    "timed_out": False,
    "reused_from": None,
    "finished_at": None,
}


@dataclass
class Seed:
    """A step of a new run taken from an earlier one (a re-run's plan, a journal): reused as
    completed, or, when ``recovering``, executed with ``ctx.run.recovered`` and the recorded
    output as ``previous_output``. ``tasks``: its recorded ``ctx.task`` results by key;
    ``tasks_only``: the step executes anew, and only those are taken (a journal's first
    incomplete step)."""

    name: str
    position: int
    output: Any = None
    resume_data: Any = None
    timed_out: bool = False
    runs: int = 1
    reused_from: str | None = None
    content_hash: str | None = None
    reads: Any = None
    recovering: bool = False
    tasks: dict[str, Any] = field(default_factory=dict)
    tasks_only: bool = False

    def row(self, run_id: str, now: datetime) -> dict[str, Any]:
        """Its step row: completed and ``reused``, or pending and ``recovered`` with the
        recorded output as its ``previous_output``. Every row has the same keys (one
        executemany takes them all)."""
        recovering = self.recovering
        result = (
            _AS_PENDING
            if recovering
            else {
                "output": self.output,
                "resume_data": self.resume_data,
                "timed_out": self.timed_out,
                "reused_from": self.reused_from,
                "finished_at": now,
            }
        )
        return {
            "run_id": run_id,
            "name": self.name,
            "position": self.position,
            "attempts": 0,
            "content_hash": self.content_hash,
            "reads": self.reads,
            "status": "pending" if recovering else "completed",
            "runs": 1 if recovering else self.runs,
            "reused": not recovering,
            "recovered": recovering,
            "previous_output": self.output if recovering else None,
            **result,
        }


def start_seeded_run(
    version: WorkflowVersion,
    input: Any,
    seeds: list[Seed],
    *,
    trigger: str,
    user: str | None,
    rerun_of: str | None = None,
    recovered_from: str | None = None,
) -> Run:
    """Record a pending run whose ``seeds`` come from an earlier run, with their step rows and
    task results, in one transaction, and enqueue it. The input is validated as for a start;
    the worker skips the reused steps as it skips completed ones on a replay."""
    run = new_run(version, input, trigger=trigger, user=user)
    run.rerun_of, run.recovered_from = rerun_of, recovered_from
    reused = {seed.position for seed in seeds if not (seed.recovering or seed.tasks_only)}
    while run.current_step in reused:
        run.current_step += 1
    now = utcnow()
    tasks = [
        {"run_id": run.id, "step_name": seed.name, "key": key, "result": result, "created_at": now}
        for seed in seeds
        for key, result in seed.tasks.items()
    ]
    rows = [seed.row(run.id, now) for seed in seeds if not seed.tasks_only]
    write_transaction()
    db.session.add(run)
    db.session.flush()
    # Core inserts, many rows a statement: a journal can carry thousands of task results.
    if rows:
        db.session.connection().execute(insert(StepRun.__table__), rows)
    if tasks:
        db.session.connection().execute(insert(TaskResult.__table__), tasks)
    db.session.commit()
    enqueue_run(run.id)
    return run
