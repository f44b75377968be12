"""Notifications (docs/operations.md#notifications) through the Outbox and a real SMTP server on
the loopback interface: one email per failed run whatever its retries, one per approval wait
when asked, none without ``notify``; and from a real worker process."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from console import runs as domain
from console.extensions import db
from console.models import OutboxMessage
from tests.conftest import run_status, wait_for
from tests.support import code, step
from tests.test_links import Inbox, mailing, smtp  # noqa: F401 (fixtures)

NOTIFY = {"on": ["failed"], "email": ["ops@example.com"]}
BOOM = code("raise RuntimeError('the API said no')")


@pytest.fixture
def inbox(app, smtp) -> Inbox:  # noqa: F811
    inbox, port = smtp
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port)
    return inbox


def outbox(run_id: str) -> list[Any]:
    db.session.commit()
    rows = db.session.execute(
        select(OutboxMessage.subject, OutboxMessage.status, OutboxMessage.recipients).where(
            OutboxMessage.run_id == run_id
        )
    ).all()
    db.session.commit()
    return rows


def test_a_failed_run_sends_one_email_whatever_its_retries(app, define, work, inbox):
    workflow = define(
        "flaky",
        [step("call", "raise RuntimeError('the API said no')", retries=2, retry_delay=0)],
        notify=NOTIFY,
    )
    run, _ = domain.start_run(workflow, {})
    work()
    assert run_status(run.id) == "failed"
    subject = f"Run {run.id} of flaky failed"
    (message,) = wait_for(lambda: inbox.received(subject), message="the failure email")
    text = Inbox.text(message)
    assert message["To"] == "ops@example.com"
    for part in ("Workflow: flaky", f"Run: {run.id}", "Step: call", "the API said no"):
        assert part in text, text
    assert f"http://console.test/runs/{run.id}" in text
    assert outbox(run.id) == [(subject, "sent", ["ops@example.com"])]
    assert len(inbox.received()) == 1


def test_a_run_failed_by_its_output_schema_is_reported_once(app, define, work, inbox):
    workflow = define(
        "typed",
        [("one", code("return 'text'"))],
        output_schema={"type": "integer"},
        notify=NOTIFY,
    )
    run, _ = domain.start_run(workflow, {})
    work()
    assert run_status(run.id) == "failed"
    (message,) = wait_for(lambda: inbox.received(), message="the failure email")
    assert "output schema" in Inbox.text(message)


def test_approval_waits_are_reported_when_asked(app, define, work, inbox, api):
    workflow = define(
        "approve",
        [("ask", code("ctx.flow.suspend(timeout=600)\nreturn 1")), ("then", code("return 2"))],
        notify={"on": ["failed", "suspended"], "email": "ops@example.com, lead@example.com"},
    )
    run, _ = domain.start_run(workflow, {})
    work(until=lambda: run_status(run.id) == "suspended")
    subject = f"Run {run.id} of approve waits for approval"
    (message,) = wait_for(lambda: inbox.received(subject), message="the approval email")
    assert message["To"] == "ops@example.com, lead@example.com"
    assert "step ask" in Inbox.text(message)
    assert api.post(f"/api/runs/{run.id}/cancel").status_code == 200
    assert len(outbox(run.id)) == 1  # a cancel is no failure


def test_nothing_is_sent_without_notify_or_for_other_events(app, define, work, inbox):
    quiet = define("quiet", [("one", BOOM)])
    only = define("only_failures", [("ask", code("ctx.flow.suspend(timeout=600)"))], notify=NOTIFY)
    failed, _ = domain.start_run(quiet, {})
    asking, _ = domain.start_run(only, {})
    work(until=lambda: run_status(asking.id) == "suspended" and run_status(failed.id) == "failed")
    assert outbox(failed.id) == [] and outbox(asking.id) == []
    assert inbox.received() == []


@pytest.mark.parametrize(
    ("notify", "path"),
    [
        ({"email": []}, "/notify/email"),
        ({"email": ["not an address"]}, "/notify/email"),
        ({"on": ["completed"], "email": ["a@example.com"]}, "/notify/on"),
        ({"email": ["a@example.com"], "cc": "x"}, "/notify/cc"),
        ("ops@example.com", "/notify"),
    ],
)
def test_notify_is_validated(app, api, notify, path):
    body = {"name": "n", "steps": [step()], "notify": notify}
    answer = api.put("/api/workflows/n", json=body)
    assert answer.status_code == 422
    assert [d["path"] for d in answer.json["details"]] == [path]


@pytest.mark.slow
def test_a_worker_process_mails_a_failure_through_smtp(
    app,
    define,
    api,
    processes,
    mailing,  # noqa: F811
):
    define("flaky", [("call", BOOM)], notify=NOTIFY)
    processes.worker()
    run_id = api.post("/api/workflows/flaky/runs", json={"input": {}}).json["id"]
    subject = f"Run {run_id} of flaky failed"
    wait_for(lambda: mailing.received(subject), timeout=60, message=processes.output())
    assert outbox(run_id) == [(subject, "sent", ["ops@example.com"])]
