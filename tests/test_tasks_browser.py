"""The Tasks page, Approvals and the run page in Chromium against a live stack (web server,
worker and scheduler as real processes): actions from cards, approvals, bulk actions,
filters, a stale action, and screenshots at 1280 and 390 px."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from console import runs as domain
from console.auth import create_user
from console.extensions import db
from console.models import Run
from tests.conftest import browser_log_in, screenshot, steps_completed
from tests.support import code

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.sqlite_only]

SLOW_STEP = code("import time\ntime.sleep(1.2)\nreturn ctx.run.id[-4:]")
APPROVAL = [
    ("ask", code("ctx.flow.suspend(timeout=ctx.input.get('timeout', 3600))\nreturn 'asked'")),
    ("use", code("return {'got': ctx.steps.ask.resume_data}")),
]


def fresh(run_id: str) -> Run:
    """The run as the database has it now. The session's transaction is ended first: on
    SQLite a read transaction keeps the snapshot it began with (an attribute loaded lazily,
    say ``held.id`` after a commit, begins one), so reusing it would read the past."""
    db.session.commit()
    db.session.expire_all()
    run = db.session.get(Run, run_id)
    db.session.refresh(run)
    return run  # loaded; the next helper call ends this read


def badge(page, run_id: str):
    return page.locator(f"#run-{run_id} .card-head .badge")


@pytest.fixture
def operator(app, live, page):
    create_user("op@example.com", "operator", "s3cret-pass")
    browser_log_in(page, live.base, "op@example.com", "s3cret-pass")
    page.dialogs = []  # what each confirmation said; all are accepted

    def confirm(dialog) -> None:
        page.dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    return page


def test_pause_resume_and_cancel_from_cards(app, live, operator, define):
    page = operator
    wf = define("slow_steps", [(f"s{i}", SLOW_STEP) for i in range(4)], title="Slow steps")
    held, _ = domain.start_run(wf, {})
    page.goto(live.url("/tasks"))
    expect(badge(page, held.id)).to_contain_text("running", timeout=20_000)  # live update

    live.until(lambda: steps_completed(held.id) >= 1, "the first step")
    page.locator(f"#run-{held.id}").get_by_role("button", name="Pause").click()
    expect(badge(page, held.id)).to_contain_text("paused")
    expect(page.locator(f"#run-{held.id} .card-message")).to_contain_text("Paused")
    at_pause = steps_completed(held.id)
    seen = fresh(held.id)
    seen_at_pause = (seen.status, seen.current_step, seen.updated_at, seen.lease_owner)
    # The step that was running finishes; no next step starts.
    live.until(lambda: fresh(held.id).lease_owner is None, "the worker letting go")
    stopped = steps_completed(held.id)
    assert stopped <= at_pause + 1 and fresh(held.id).status == "paused", (
        seen_at_pause,
        live.processes.output(),
    )
    page.wait_for_timeout(2500)
    assert steps_completed(held.id) == stopped and stopped < 4, live.processes.output()

    # From the keyboard: the actions are real buttons in the tab order.
    page.locator(f"#run-{held.id} .card-title a").focus()
    for _ in range(3):
        page.keyboard.press("Tab")  # the id link, then Resume
        if page.evaluate("document.activeElement.textContent.trim()") == "Resume":
            break
    assert page.evaluate("document.activeElement.textContent.trim()") == "Resume"
    page.keyboard.press("Enter")
    expect(badge(page, held.id)).to_contain_text("completed", timeout=30_000)
    expect(page.locator(f"#run-{held.id}")).to_contain_text("4 of 4 done")
    # The counts at the top moved with it.
    expect(page.locator("#status-counts .count-completed strong")).to_have_text("1")

    doomed, _ = domain.start_run(wf, {})
    expect(page.locator(f"#run-{doomed.id}")).to_be_visible()  # new runs appear by themselves
    assert page.locator(".run-card").first.get_attribute("data-run") == doomed.id
    page.locator(f"#run-{doomed.id}").get_by_role("button", name="Cancel run").click()
    expect(badge(page, doomed.id)).to_contain_text("canceled")
    assert fresh(doomed.id).status == "canceled"

    # The run page tells the story of the paused-and-resumed run.
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(live.url(f"/runs/{held.id}"))
        expect(page.locator("#run-live .run-head .badge").first).to_contain_text("completed")
        screenshot(page, f"run-page-{width}")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_approve_and_reject_from_cards_and_a_stale_action(app, live, operator, define):
    page = operator
    wf = define("approval", APPROVAL, title="Approval")
    approve, _ = domain.start_run(wf, {"timeout": 600})
    reject, _ = domain.start_run(wf, {"timeout": 7200})
    stale, _ = domain.start_run(wf, {"timeout": 3600})
    live.until(
        lambda: all(fresh(r.id).status == "suspended" for r in (approve, reject, stale)),
        "three suspended runs",
    )
    page.goto(live.url("/approvals"))
    cards = page.locator(".run-card")
    expect(cards).to_have_count(3)
    assert cards.evaluate_all("cs => cs.map(c => c.dataset.run)") == [
        approve.id,
        stale.id,
        reject.id,
    ]  # soonest deadline first
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        screenshot(page, f"approvals-{width}")
    page.set_viewport_size({"width": 1280, "height": 900})

    card = page.locator(f"#run-{approve.id}")  # on Approvals the decision form is open
    card.get_by_label("Comment (optional)").fill("Ship it")
    card.get_by_role("button", name="Approve").click()
    expect(page.locator(f"#run-{approve.id} .card-message")).to_contain_text("Approved")
    live.until(lambda: fresh(approve.id).status == "completed", "the approved run")
    assert fresh(approve.id).output == {"got": {"comment": "Ship it"}}  # the next step got it
    expect(badge(page, approve.id)).to_contain_text("completed", timeout=10_000)

    card = page.locator(f"#run-{reject.id}")
    card.get_by_role("button", name="Reject").click()
    expect(badge(page, reject.id)).to_contain_text("canceled")
    assert fresh(reject.id).status == "canceled"

    # A run that starts waiting after the page was drawn is announced, not missed.
    late, _ = domain.start_run(wf, {"timeout": 60})
    expect(page.locator("#approvals-news")).to_contain_text(
        "1 more run is waiting for a decision", timeout=20_000
    )
    page.locator("#approvals-news").get_by_role("link").click()
    expect(page.locator(".run-card").first).to_have_attribute("data-run", late.id)
    expect(page.locator(f"#run-{stale.id}")).to_be_visible()

    # Someone cancels the run elsewhere while this page still offers Approve.
    page.route("**/tasks/updates**", lambda route: route.fulfill(status=204))
    domain.cancel_run(stale.id)
    card = page.locator(f"#run-{stale.id}")
    card.get_by_role("button", name="Approve").click()
    message = page.locator(f"#run-{stale.id} .card-message")
    expect(message).to_contain_text("no longer waits for a decision: it is canceled")
    expect(badge(page, stale.id)).to_contain_text("canceled")


def test_bulk_pause_and_resume_a_workflow_and_filters(app, live, operator, define):
    page = operator
    sync = define("sync_orders", [("a", SLOW_STEP), ("b", SLOW_STEP)], title="Sync orders")
    other = define("reports", [("a", code())], title="Reports")
    report, _ = domain.start_run(other, {})
    live.until(lambda: fresh(report.id).status == "completed", "the report run")
    syncs = [domain.start_run(sync, {"n": i})[0].id for i in range(3)]

    page.goto(live.url("/tasks"))
    expect(page.locator(".run-card")).to_have_count(4)
    page.get_by_label("Workflow").select_option("sync_orders")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".run-card")).to_have_count(3)
    assert "workflow=sync_orders" in page.url  # pushed: the filter is a link

    pause = page.locator("form.bulk").get_by_role("button", name="Pause")
    expect(pause).to_have_text("Pause 3")
    pause.click()
    expect(page.locator("#board .flash")).to_contain_text("Paused 3 runs.")
    assert page.dialogs == ["Pause 3 runs matching these filters?"]
    assert {fresh(r).status for r in syncs} == {"paused"}
    assert fresh(report.id).status == "completed"
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        screenshot(page, f"tasks-{width}")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.locator("form.bulk").get_by_role("button", name="Resume 3").click()
    expect(page.locator("#board .flash")).to_contain_text("Resumed 3 runs.")
    live.until(lambda: all(fresh(r).status == "completed" for r in syncs), "the resumed runs")
    for run_id in syncs:
        expect(badge(page, run_id)).to_contain_text("completed", timeout=15_000)
    # Cards swapped in by the live poll show their times in the viewer's timezone too.
    started = page.locator(f"#run-{syncs[0]} time").first
    assert "UTC" not in started.inner_text() and started.get_attribute("title").endswith("Z")
    expect(page.locator(f"#run-{syncs[0]} .elapsed")).to_contain_text("took ")

    # The status counts filter; the id search finds one run.
    page.get_by_role("link", name="Clear").click()
    expect(page).to_have_url(live.url("/tasks"))
    page.locator(".status-counts a.count-completed").click()
    expect(page).to_have_url(re.compile(r"status=completed"))
    expect(page.locator(".run-card")).to_have_count(4)
    page.get_by_label("Run id").fill(syncs[1][:14])
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"q=" + syncs[1][:14]))
    expect(page.locator(".run-card")).to_have_count(1)
    expect(page.locator(f"#run-{syncs[1]}")).to_be_visible()
    page.get_by_label("Run id").fill("zzzz")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No run matches these filters.")).to_be_visible()


def test_the_run_page_keeps_what_the_viewer_opened_and_closed(app, live, operator, define):
    page = operator
    wf = define("story", [(f"s{i}", SLOW_STEP) for i in range(4)])
    run, _ = domain.start_run(wf, {"who": "me"})
    page.goto(live.url(f"/runs/{run.id}"))
    first_output = page.locator('details[data-key="s0.output"]')
    expect(first_output).to_be_attached(timeout=20_000)  # drawn when s0 completed
    live_section = page.locator("#run-live")
    first_output.locator("summary").click()  # the viewer opens it (a choice either way)...
    if first_output.get_attribute("open") is None:
        first_output.locator("summary").click()
    page.locator('details[data-key="input"] summary').click()  # ...and closes the input
    expect(page.locator('details[data-key="input"]')).not_to_have_attribute("open", "")
    live.until(lambda: steps_completed(run.id) >= 3, "two more steps")
    expect(page.locator("#step-s2 .badge").first).to_contain_text("completed", timeout=10_000)
    expect(live_section.locator(".run-head .badge").first).not_to_contain_text("pending")
    # Redrawn since, and still as the viewer left them.
    assert first_output.get_attribute("open") is not None
    assert page.locator('details[data-key="input"]').get_attribute("open") is None


@pytest.fixture
def small_bulk(monkeypatch):
    """Bulk actions over more than one run go to a worker (set before the live stack starts)."""
    monkeypatch.setenv("BULK_INLINE_MAX", "1")


def test_a_large_bulk_action_shows_its_progress(small_bulk, app, live, operator, define):
    page = operator
    wf = define("approval", APPROVAL, title="Approval")
    waiting = [domain.start_run(wf, {})[0].id for _ in range(3)]
    live.until(lambda: all(fresh(r).status == "suspended" for r in waiting), "suspended runs")
    page.goto(live.url("/tasks?workflow=approval"))
    page.locator("form.bulk").get_by_role("button", name="Cancel 3").click()
    expect(page.locator("#board .flash")).to_contain_text("Canceling 3 runs in the background")
    panel = page.locator(".bulk-progress")
    expect(panel).to_contain_text("Canceled 3 runs", timeout=20_000)  # it polled itself
    assert {fresh(r).status for r in waiting} == {"canceled"}
    for run_id in waiting:
        expect(badge(page, run_id)).to_contain_text("canceled", timeout=10_000)
    # The bulk buttons follow the counts: nothing is left to pause, resume or cancel.
    expect(page.locator("#bulk-actions form.bulk")).to_have_count(0, timeout=10_000)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        screenshot(page, f"tasks-bulk-{width}")
    page.set_viewport_size({"width": 1280, "height": 900})
