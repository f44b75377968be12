"""RQ jobs. ``advance_run`` is the one job of the engine: it claims a run and advances it
through consecutive steps until the run ends, waits, is paused or is canceled.

Checkpoints make it safe to run twice: completed steps are replayed from their recorded
output, and a duplicate job (or a worker that woke up late) cannot claim a run that another
worker holds, nor record anything once its claim is gone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import String, bindparam, select
from sqlalchemy.engine import Engine

from console import runs as domain
from console import secrets
from console.extensions import db
from console.models import Run, WorkflowVersion
from console.stepkinds import executed_code
from console.timeutil import utcnow

from .app import get_app, get_sandbox, job_context
from .execution import Execution
from .runtime import ClaimLost, RunInfo, StepLogger, StepResult
from .sandbox import ControlHandler, Sandbox, StepCall, StepEnd

log = logging.getLogger(__name__)


def advance_run(run_id: str) -> str | None:
    """The RQ job: advance one run as far as it can go now. Returns its status."""
    with job_context():
        return Runner(run_id).advance()


def warm_up() -> None:
    """Run the engine's statements once against no run, so that the ORM's mappers and the
    compiled SQL exist before a worker forks: each work-horse then starts warm."""
    from sqlalchemy.orm import configure_mappers

    configure_mappers()
    nobody = domain.Claim("0" * 26, "warm-up")
    now = utcnow()
    outcome = domain.StepOutcome(
        name="-", position=0, status="completed", started_at=now, finished_at=now, attempts=1
    )
    with get_app().app_context():
        domain.claim_run(nobody.run_id, nobody.owner)
        domain.record_step_completed(nobody, outcome, 1, [])
        domain.record_task(nobody, "-", "-", None, [])
        domain.finish_run(nobody, "completed")
        for stmt in domain.REPLAY_READS:
            db.session.execute(stmt, {"b_id": nobody.run_id}).all()
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def new_owner() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Heartbeat:
    """Renews the run's lease on its own connection while a step executes, and stops the
    step when its run is canceled meanwhile.

    Renewal stops at the step's deadline plus a grace period, so a step stuck where its
    timeout cannot interrupt it lets the lease lapse and the reconciler hand the run on.
    While a step executes, the run's status is also read every ``CANCEL_POLL`` seconds (the
    lease may be renewed far less often): a cancel kills the step's process.
    """

    CANCEL_POLL = 0.5

    def __init__(self, engine: Engine, claim: domain.Claim, lease: float, sandbox: Sandbox) -> None:
        self.engine = engine
        self.claim = claim
        self.lease = lease
        self.sandbox = sandbox
        self.deadline: float | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        self.thread.join()

    def _beat(self) -> None:
        interval = max(self.lease / 3, 0.2)
        next_renewal = time.monotonic() + interval
        while not self.stopped.wait(min(interval, self.CANCEL_POLL)):
            deadline = self.deadline
            if deadline is None:
                if time.monotonic() >= next_renewal:
                    next_renewal = time.monotonic() + interval
                    self._renew()
                continue
            if self._canceled():
                self.sandbox.kill("canceled")
            if time.monotonic() >= next_renewal and time.monotonic() <= deadline:
                next_renewal = time.monotonic() + interval
                self._renew()

    def _renew(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execution_options(sqlite_immediate=True)
                with conn.begin():
                    domain.renew_lease(conn, self.claim.run_id, self.claim.owner, self.lease)
        except Exception:  # a missed beat is survivable; the next one retries
            log.exception("lease renewal failed for run %s", self.claim.run_id)

    def _canceled(self) -> bool:
        try:
            with self.engine.connect() as conn:
                status = conn.execute(_RUN_STATUS, {"b_id": self.claim.run_id}).scalar()
                conn.rollback()
        except Exception:  # read again at the next poll
            log.exception("reading the status of run %s failed", self.claim.run_id)
            return False
        return status == "canceled"


_RUN_STATUS = select(Run.status).where(Run.id == bindparam("b_id", type_=String()))


@dataclass(frozen=True)
class PinnedVersion:
    id: int
    label: str
    definition: dict[str, Any]
    # Each step's content hash (``console.runs.step_hash``), recorded with its executions.
    hashes: dict[str, str]


_versions: dict[tuple[int, str], PinnedVersion] = {}


def kept_if_canceled(
    status: str | None, claim: domain.Claim, outcome: domain.StepOutcome, logs: list[Any]
) -> str | None:
    """A step's record that did not take (``status`` None) because the run was canceled
    while the step executed is kept as a canceled step; the status is passed through."""
    if status is None:
        domain.record_step_canceled(claim, outcome, logs)
    return status


def load_version(version_id: int) -> PinnedVersion:
    """A run's version; definitions never change once published, so each process parses one
    once (keyed with its hash too, since ids repeat across databases)."""
    head = db.session.execute(
        select(WorkflowVersion.label, WorkflowVersion.definition_hash).where(
            WorkflowVersion.id == version_id
        )
    ).one()
    key = (version_id, head.definition_hash)
    pinned = _versions.get(key)
    if pinned is None:
        definition: dict[str, Any] = db.session.execute(
            select(WorkflowVersion.definition).where(WorkflowVersion.id == version_id)
        ).scalar_one()
        hashes = {step["name"]: domain.step_hash(step) for step in definition["steps"]}
        pinned = _versions[key] = PinnedVersion(version_id, head.label, definition, hashes)
    return pinned


class Runner:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.owner = new_owner()

    def advance(self) -> str | None:
        status = None
        # Loop: a run resumed, or due again (a zero-delay retry), while we held it is ours.
        while (claim := domain.take_run(self.run_id, self.owner)) is not None:
            lease = float(current_app.config["RUN_LEASE_SECONDS"])
            sandbox = get_sandbox()
            try:
                with Heartbeat(db.engine, claim, lease, sandbox) as heartbeat:
                    status, again = self.drive(claim, heartbeat)
            finally:
                sandbox.end_run()  # the run's step process goes with its job
            if not again:
                break
        # Whatever happened, this worker holds no slot of the run's workflow now.
        domain.start_waiting(self.run_id)
        return status

    # ----------------------------------------------------------------------------------
    def drive(self, claim: domain.Claim, heartbeat: Heartbeat) -> tuple[str | None, bool]:
        """Execute the run's remaining steps. Returns (status, whether to claim again)."""
        replay = domain.load_replay(self.run_id)
        run, rows, tasks, sent = replay.run, replay.steps, replay.tasks, replay.sent
        version = load_version(run.version_id)
        definition = version.definition
        steps = definition["steps"]
        results: dict[str, StepResult] = {}
        run_input = run.input or {}
        output: Any = None
        db.session.commit()  # end the read transaction; nothing is held while steps execute

        for position, step in enumerate(steps):
            name = step["name"]
            row = rows.get(name)
            if row is not None and row.status == "completed":
                results[name] = StepResult(
                    name, "completed", row.output, row.resume_data, row.timed_out
                )
                output = row.output
                continue
            runs, attempts, context, callback = 1, 1, None, None
            if row is not None:
                runs, context = row.runs, row.context
                # Re-entering after ctx.wait continues the same attempt; a rerun starts anew.
                attempts = row.attempts if row.sleep_reason == "wait" else row.attempts + 1
                if runs > 1:
                    # A rerun starting closes the previous execution's link (its wait is
                    # over); the request that came through it stays this execution's.
                    held, callback = domain.rerun_callback(
                        claim, name, runs, starting=row.sleep_reason == "rerun"
                    )
                    if not held:
                        return None, False
            logger = StepLogger(name, attempts)
            if domain.too_many_recoveries(claim):  # then this is the step the workers died in
                return domain.fail_recovered_step(claim, name, position, attempts, row), False
            step_tasks = tasks.setdefault(name, {})
            values = secrets.step_secrets()  # read per execution: a change applies next time
            sealer = secrets.Masker(values)  # built once per execution, not per task

            def record(
                key: str,
                result: Any,
                _name: str = name,
                _logger: StepLogger = logger,
                _given: secrets.Masker = sealer,
            ) -> None:
                stored = secrets.stored_task_result(result, _given)  # sealed if it holds one
                if not domain.record_task(claim, _name, key, stored, _logger.drain()):
                    raise ClaimLost()

            execution = Execution(claim, name, runs, step_tasks, record, sent)
            call = StepCall(
                name=name,
                code=executed_code(step),
                timeout=float(step["timeout"]),
                input=run_input,
                steps=results,
                run=RunInfo(
                    id=run.id,
                    runs=runs,
                    attempt=attempts,
                    context=context,
                    callback_request=callback,
                    recovered=bool(row is not None and row.recovered),
                    previous_output=row.previous_output if row is not None else None,
                ),
                workflow=definition["name"],
                version=version.label,
                process_key=run.id,
                tasks=step_tasks,
                secrets=values,
            )
            started = utcnow()
            heartbeat.deadline = time.monotonic() + float(step["timeout"]) + heartbeat.lease
            try:
                end = heartbeat.sandbox.execute(
                    call, ControlHandler(execution, step_tasks, record), logger
                )
            except ClaimLost:
                return None, False
            finally:
                heartbeat.deadline = None
            exited, wait_until, output = False, None, None
            if end.kind == "ok":
                output = end.output
            elif end.kind == "exit":
                exited = True
                if end.exit_reason is not None:
                    logger.info(f"run exited: {end.exit_reason}")
            elif end.kind == "wait":
                wait_until = end.wait_until
            elif end.kind == "killed":
                return self.stopped(claim, step, position, row, attempts, started, end, logger)
            else:
                return self.fail_step(
                    claim, step, position, row, attempts, started, end, logger, runs, context
                ), True
            outcome = domain.StepOutcome(
                name=name,
                position=position,
                status="completed",
                started_at=started,
                finished_at=utcnow(),
                attempts=attempts,
                output=output,
                exists=row is not None,
                runs=runs,
                context=context,
                content_hash=version.hashes[name],
                reads=end.reads,
            )
            logs = logger.drain()
            if wait_until is not None and not exited:
                status = domain.record_step_waiting(claim, outcome, wait_until, logs)
                return kept_if_canceled(status, claim, outcome, logs), True
            if execution.suspend_waitpoint is not None and not exited:
                status = domain.record_step_suspended(
                    claim, outcome, execution.suspend_waitpoint, logs
                )
                if status is None or status == "suspended":
                    return kept_if_canceled(status, claim, outcome, logs), False
            elif execution.rerun_request is not None and not exited:
                waitpoint, delay, rerun_context = execution.rerun_request
                status = domain.record_step_rerun(
                    claim, outcome, waitpoint, delay, rerun_context, logs
                )
                return kept_if_canceled(status, claim, outcome, logs), True
            else:
                status = domain.record_step_completed(
                    claim, outcome, position + 1, logs, close_waits=execution.opened
                )
            if status is None:
                return kept_if_canceled(status, claim, outcome, logs), False
            results[name] = StepResult(name, "completed", output, outcome.resume_data)
            if exited:
                skipped = [
                    (i, s["name"])
                    for i, s in enumerate(steps)
                    if i > position and s["name"] not in rows
                ]
                return self.finish(claim, definition, output, skipped), False
            last = position == len(steps) - 1
            if not last and not domain.continue_after_boundary(claim, status):
                return self._after_release(claim)
        return self.finish(claim, definition, output), False

    def _after_release(self, claim: domain.Claim) -> tuple[str | None, bool]:
        status = db.session.scalar(select(Run.status).where(Run.id == claim.run_id))
        return status, status == "pending"

    def stopped(
        self,
        claim: domain.Claim,
        step: dict[str, Any],
        position: int,
        row: Any,
        attempts: int,
        started: Any,
        end: StepEnd,
        logger: StepLogger,
    ) -> tuple[str | None, bool]:
        """The step's process was killed from the engine: a cancel keeps the step as
        canceled; a shutdown gives the run back, queued again, recording nothing."""
        if end.killed_for != "canceled":
            domain.hand_back_run(claim)
            return None, False
        outcome = domain.StepOutcome(
            name=step["name"],
            position=position,
            status="canceled",
            started_at=started,
            finished_at=utcnow(),
            attempts=attempts,
            exists=row is not None,
        )
        kept = domain.record_step_canceled(claim, outcome, logger.drain())
        return ("canceled" if kept else None), False

    def fail_step(
        self,
        claim: domain.Claim,
        step: dict[str, Any],
        position: int,
        row: Any,
        attempts: int,
        started: Any,
        end: StepEnd,
        logger: StepLogger,
        runs: int = 1,
        context: Any = None,
    ) -> str | None:
        """Record a failed attempt: ``end`` says how (the step's traceback, or how its
        process ended); a retry is due when the step has retries left."""
        finished = utcnow()
        error = end.error or "the step failed"
        retry_at = None
        if attempts <= int(step["retries"]):
            delay = float(step["retry_delay"]) * 2 ** (attempts - 1)
            retry_at = finished + timedelta(seconds=delay)
            logger.warning(
                f"attempt {attempts} failed; retrying in {delay:g} s",
                error=end.summary or error.splitlines()[0],
            )
        outcome = domain.StepOutcome(
            name=step["name"],
            position=position,
            status="failed",
            started_at=started,
            finished_at=finished,
            attempts=attempts,
            error=error,
            exists=row is not None,
            runs=runs,
            context=context,
        )
        logs = logger.drain()
        status = domain.record_step_failed(claim, outcome, retry_at, logs)
        return kept_if_canceled(status, claim, outcome, logs)

    def finish(
        self,
        claim: domain.Claim,
        definition: dict[str, Any],
        output: Any,
        skipped: Sequence[tuple[int, str]] = (),
    ) -> str | None:
        """End the run with its output, checked against the output schema (also after
        ``ctx.flow.exit``, whose remaining steps are ``skipped``)."""
        error = domain.output_error(definition.get("output_schema"), output)
        if error is not None:
            ok = domain.finish_run(claim, "failed", output=output, error=error, skipped=skipped)
            return "failed" if ok else None
        ok = domain.finish_run(claim, "completed", output=output, skipped=skipped)
        return "completed" if ok else None
