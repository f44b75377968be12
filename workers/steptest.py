"""The "Test this step" and "Test up to here" jobs (test queue): execute a step's code in the
worker's step sandbox, as a run's steps are, with the editor's sample input, the earlier steps'
outputs and resume_data (``console.steptests``) and the step's timeout. A chain executes its
tests in order, each output passed on to the next test's ``ctx.steps``.

Nothing here touches a run. Suspend, rerun, ``ctx.wait`` and email are not performed: the
test result says what a real run would have done instead.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import current_app
from sqlalchemy import select

from console import secrets, steptests
from console.extensions import db
from console.links import Links
from console.mail import normalise_recipients
from console.models import StepTest, Workflow

from .app import get_sandbox, job_context
from .runtime import RunInfo, StepLogger, StepResult
from .sandbox import ControlHandler, StepCall


def run_step_test(test_id: str) -> str | None:
    """The RQ job. Returns the test's final status (None when another worker had it)."""
    with job_context():
        return execute(test_id)


def run_step_test_chain(test_ids: list[str]) -> list[str | None]:
    """The "Test up to here" RQ job. A step that fails leaves the later ones unexecuted."""
    with job_context():
        statuses: list[str | None] = []
        outputs: dict[str, Any] = {}
        resume: dict[str, Any] = {}
        failed: str | None = None
        for test_id in test_ids:
            test = db.session.get(StepTest, test_id)
            if test is None:
                statuses.append(None)
                continue
            name, step_resume = test.step_name, (test.step or {}).get("resume_data")
            if failed is not None:
                steptests.finish_step_test(
                    test_id,
                    "failed",
                    error=f"Not executed: the earlier step {failed!r} failed.",
                    claimed=False,
                )
                statuses.append("failed")
                continue
            steptests.feed_step_test(test_id, {**outputs, steptests.RESUME: dict(resume)})
            status = execute(test_id)
            statuses.append(status)
            if status != "completed":
                failed = name
                continue
            db.session.expire_all()
            done = db.session.get(StepTest, test_id)
            outputs[name] = done.output if done is not None else None
            if step_resume is not None:
                resume[name] = step_resume
        return statuses


class TestControl:
    """What ``ctx`` asks of the engine, answered without performing it: each call is noted."""

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes

    def _links(self) -> Links:
        base = current_app.config["BASE_URL"]
        return Links(
            resume_url=f"{base}/flow/resume/not-created-in-a-test",
            cancel_url=f"{base}/flow/cancel/not-created-in-a-test",
        )

    def suspend(self, seconds: float) -> Links:
        self.notes.append(
            f"ctx.flow.suspend was called (timeout {seconds:g} s): in a real run the run would "
            "suspend here; links are not created in a test (the ones returned lead nowhere)."
        )
        return self._links()

    def rerun(self, delay: float, context: Any, max_retries: int) -> Links:
        self.notes.append(
            f"ctx.flow.rerun was called (delay {delay:g} s, max_retries {max_retries}, context "
            f"{context!r}): in a real run this step would execute again after the delay; a "
            "test executes it once and links are not created."
        )
        return self._links()

    def wait(self, key: str, seconds: float) -> None:
        self.notes.append(
            f"ctx.wait({key!r}, {seconds:g}) was called: in a real run the step would sleep "
            f"{seconds:g} s and execute again from the top; in a test it returns at once."
        )

    def send_email(self, to: Any, subject: str, text: str, html: str | None) -> None:
        recipients = ", ".join(normalise_recipients(to))
        self.notes.append(
            f"ctx.send_email was called: emails are not sent in a test. To: {recipients}; "
            f"subject: {subject}\n{text}"
        )


def test_run_info(test_id: str, step: dict[str, Any], given: Any, notes: list[str]) -> RunInfo:
    """``ctx.run`` of a test. A step that re-runs itself, tested with a value in its
    resume_data field, is tested as the execution its resume link woke: the second one, with
    the value as the JSON body of ``ctx.run.callback_request``."""
    if given is None or not steptests.reruns(step):
        return RunInfo(id=f"test-{test_id}")
    body = json.dumps(given)
    callback = {"method": "POST", "headers": {}, "query": {}, "json": given, "body": body}
    notes.append(
        "Tested as execution 2, woken through the resume link of ctx.flow.rerun with the "
        "given value as ctx.run.callback_request's JSON body."
    )
    return RunInfo(id=f"test-{test_id}", runs=2, callback_request=callback)


def _log_json(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(line, created_at=line["created_at"].isoformat()) for line in lines]


def execute(test_id: str) -> str | None:
    if not steptests.claim_step_test(test_id):
        return None
    test = db.session.get(StepTest, test_id)
    assert test is not None
    step = test.step
    notes = list(test.notes or [])
    given = dict(test.steps or {})
    resume = given.pop(steptests.RESUME, None) or {}
    earlier = {
        name: StepResult(name, "completed", output, resume_data=resume.get(name))
        for name, output in given.items()
    }
    workflow_name = db.session.scalar(select(Workflow.name).where(Workflow.id == test.workflow_id))
    logger = StepLogger(step["name"], 1)
    call = StepCall(
        name=step["name"],
        code=step["code"],
        timeout=float(step.get("timeout") or 900),
        input=test.input if isinstance(test.input, dict) else {},
        steps=earlier,
        run=test_run_info(test.id, step, (test.step or {}).get("resume_data"), notes),
        workflow=workflow_name or "",
        version="draft",
        tasks={},
        secrets=secrets.step_secrets(),
    )
    db.session.commit()  # hold no transaction while the step executes
    started = time.monotonic()
    status, output, error = "completed", None, None
    end = get_sandbox().execute(call, ControlHandler(TestControl(notes), {}), logger)
    if end.kind == "ok":
        output = end.output
    elif end.kind == "exit":
        reason = f" ({end.exit_reason})" if end.exit_reason is not None else ""
        notes.append(
            f"ctx.flow.exit was called{reason}: in a real run the run would end here as "
            "completed, skipping the steps after this one."
        )
    elif end.kind != "wait":  # TestControl.wait returns: a wait cannot end a test
        status, error = "failed", end.error or "the step failed"
    duration = int((time.monotonic() - started) * 1000)
    steptests.finish_step_test(
        test_id,
        status,
        output=output,
        logs=_log_json(logger.drain()),
        notes=notes,
        error=error,
        duration_ms=duration,
    )
    return status
