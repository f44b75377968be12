"""Checks at save time and readable step errors, in Debian's Chromium against a live stack
(web server, worker, scheduler): each error sits at its field and the form keeps what was
typed; a failed HTTP step shows its one-line error first."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from rq import Queue, Worker

from console.auth import create_user
from console.definitions import save_workflow
from console.extensions import db
from console.models import Schedule, Workflow
from console.queueing import get_redis
from console.runs import start_run
from tests.conftest import browser_log_in, run_status, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.sqlite_only]

SCHEMA = {"type": "object", "properties": {"date": {"type": "string"}}, "required": ["date"]}


def test_errors_at_their_fields_keep_what_was_typed(app, live, page):
    url = live.url("/no-such-report/{{ input.date }}")
    fetch = {"name": "fetch", "kind": "http", "config": {"url": url, "method": "GET"}}
    save_workflow({"name": "report", "input_schema": SCHEMA, "steps": [fetch]})
    create_user("maker@example.com", "admin", "s3cret-pass")
    browser_log_in(page, live.base, "maker@example.com", "s3cret-pass")

    # A workflow name with spaces: the error is at the name, both fields keep their text.
    page.goto(live.url("/workflows"))
    page.get_by_label("Title").fill("Nightly export")
    page.get_by_label("Name (optional)").fill("Nightly export")
    page.get_by_role("button", name="Create workflow").click()
    expect(page.locator("#name-error")).to_contain_text("For example: nightly_export")
    expect(page.get_by_label("Name (optional)")).to_have_value("Nightly export")
    expect(page.get_by_label("Title")).to_have_value("Nightly export")
    assert page.locator(".flash.error").count() == 0

    # A schedule whose JSON input the schema refuses, and a cron with four fields.
    page.goto(live.url("/workflows/report/schedules"))
    form = page.locator("#add form")
    form.get_by_label("Name").fill("Daily report")
    form.get_by_label("Cron expression").fill("0 9 * *")
    form.get_by_label("Input").fill('{"day": 1}')
    form.get_by_role("button", name="Add schedule").click()
    error = page.locator("#input-error")
    expect(error).to_contain_text("does not satisfy the workflow's input schema")
    expect(error).to_contain_text("'date' is a required property")
    form = page.locator("#add form")
    expect(form.get_by_label("Input")).to_have_value('{"day": 1}')
    expect(form.get_by_label("Name")).to_have_value("Daily report")
    expect(form.get_by_text("must have 5 fields")).to_have_count(1)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        error.scroll_into_view_if_needed()
        screenshot(page, f"schedule-form-error-{width}")
    page.set_viewport_size({"width": 1280, "height": 900})

    # An input(now) snippet is tried on the worker when saved: what it raises is shown.
    tests_queue = Queue(app.config["TEST_QUEUE"], connection=get_redis())
    live.until(lambda: Worker.all(queue=tests_queue), "a worker on the test queue")
    form.get_by_label("Cron expression").fill("0 9 * * *")
    form.get_by_label("Input").fill("def input(now):\n    return {'date': now.day / 0}\n")
    form.get_by_role("button", name="Add schedule").click()
    expect(page.locator("#input-error")).to_contain_text(
        re.compile(r"input\(now\) failed when tried for the next fire .*ZeroDivisionError.*line 2")
    )
    form = page.locator("#add form")
    good = "def input(now):\n    return {'date': now.date().isoformat()}\n"
    form.get_by_label("Input").fill(good)
    form.get_by_role("button", name="Add schedule").click()
    page.wait_for_url(re.compile(r"#schedule-daily_report$"))
    db.session.expire_all()
    assert db.session.scalar(db.select(Schedule.name)) == "daily_report"

    # {{ input.<field> }} that the schema lacks: a warning at the setting, not an error.
    fetch["config"]["url"] = live.url("/no-such-report/{{ input.day }}")
    save_workflow({"name": "report", "input_schema": SCHEMA, "steps": [fetch]}, publish=False)
    page.goto(live.url("/workflows/report"))
    expect(page.locator("#step-fetch .field-warning")).to_contain_text(
        "the input schema has no field 'day'"
    )

    # A failed HTTP step: the one-line error first, the full traceback folded.
    workflow = db.session.scalar(db.select(Workflow).filter_by(name="report"))
    run, _ = start_run(workflow, {"date": "2026-12-01"})
    run_id = run.id
    live.until(lambda: run_status(run_id) == "failed", "the run to fail")
    page.goto(live.url(f"/runs/{run_id}"))
    for where in ("Input and error", "Steps"):
        shown = page.get_by_role("region", name=where).locator(".step-error")
        expect(shown.locator(".step-error-line")).to_contain_text("answered HTTP 404: <!doctype")
        expect(shown.locator(".step-error-line")).not_to_contain_text("Not Found</h1>")
        expect(shown.locator("details pre")).to_be_hidden()
        assert "in send_request" not in shown.locator(".step-error-frames").inner_text()
        assert "^^^" not in shown.locator(".step-error-frames").inner_text()
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.locator(".step-error-line").first.scroll_into_view_if_needed()
        screenshot(page, f"step-error-{width}")
    full = page.get_by_role("region", name="Steps").locator(".step-error details")
    full.locator("summary").click()
    expect(full.locator("pre")).to_contain_text("in send_request")
    expect(full.locator("pre")).to_contain_text("workers/runtime.py")
    expect(full.locator("pre")).to_contain_text("Not Found</h1>")
