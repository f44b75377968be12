"""What a first-time user meets, in Chromium against a live stack: an approval decided from its
card (the email it sent in sight, Approve and Reject without opening anything), the run page's
timeline telling compute from waiting and each attempt apart, a failed run's Re-run, and the
header, favicon and code blocks on a phone."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from console import runs as domain
from console.auth import create_user
from console.extensions import db
from console.models import OutboxMessage, Run
from tests.conftest import SCREENSHOTS, browser_log_in, screenshot
from tests.support import code

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.sqlite_only]

FLAKY = code(
    "if ctx.run.attempt == 1:\n    raise RuntimeError('the first attempt fails')\nreturn 'steady'"
)
DELAY = code("ctx.wait('delay', 1.5)\nreturn 'rested'")
ASK = code(
    "links = ctx.flow.suspend(timeout=3600)\n"
    "ctx.send_email(to='boss@example.com', subject='Approval needed: ship 1.2',\n"
    "               text='Ship release 1.2?\\nApprove: ' + links.resume_url)\n"
    "return 'asked'"
)


def status(run_id: str) -> str:
    db.session.commit()
    db.session.expire_all()
    return db.session.get(Run, run_id).status


@pytest.fixture
def operator(app, live, page):
    create_user("op@example.com", "operator", "s3cret-pass")
    browser_log_in(page, live.base, "op@example.com", "s3cret-pass")
    page.on("dialog", lambda dialog: dialog.accept())
    return page


def test_approve_from_the_card_then_read_the_timeline(app, live, operator, define):
    page = operator
    wf = define(
        "ship",
        [
            {"name": "check", "code": FLAKY, "retries": 1, "retry_delay": 0},
            ("rest", DELAY),
            ("ask", ASK),
        ],
        title="Ship a release",
    )
    run, _ = domain.start_run(wf, {})
    live.until(lambda: status(run.id) == "suspended", "the suspended run")

    page.goto(live.url("/tasks"))
    card = page.locator(f"#run-{run.id}")
    # What is being approved, and who was asked, is on the card.
    mail = card.get_by_role("region", name="The approval email")
    expect(mail).to_contain_text("Approval needed: ship 1.2")
    expect(mail).to_contain_text("to boss@example.com")
    expect(mail).to_contain_text("Ship release 1.2?")
    # The decision is in sight; the optional comment is folded.
    approve = card.get_by_role("button", name="Approve")
    expect(approve).to_be_visible()
    expect(card.get_by_role("button", name="Reject")).to_be_visible()
    expect(card.get_by_label("Comment (optional)")).to_be_hidden()
    # The step waiting for a decision is not done: the bar is not full.
    bar = card.locator("progress")
    assert bar.get_attribute("value") == "2" and bar.get_attribute("max") == "3"
    expect(card).to_contain_text("3 of 3: ask, waiting")
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        card.scroll_into_view_if_needed()
        card.screenshot(path=str(SCREENSHOTS / f"approval-card-{width}.png"))
    page.set_viewport_size({"width": 1280, "height": 900})

    # The Approvals page and the link's confirmation page say the same.
    page.goto(live.url("/approvals"))
    expect(page.locator(f"#run-{run.id}")).to_contain_text("Approval needed: ship 1.2")
    screenshot(page, "approvals-with-email-1280")
    db.session.commit()
    text = db.session.query(OutboxMessage).filter_by(run_id=run.id).one().text
    resume_url = re.search(r"Approve: (\S+)", text).group(1)
    page.goto(resume_url)
    expect(page.locator("main")).to_contain_text("Approval needed: ship 1.2")
    expect(page.locator("main")).to_contain_text("boss@example.com")
    expect(page.locator("main")).to_contain_text("/flow/resume/[hidden]")  # not the token
    screenshot(page, "approval-confirm-1280")
    assert status(run.id) == "suspended"  # a GET changes nothing

    page.goto(live.url("/tasks"))
    page.locator(f"#run-{run.id}").get_by_role("button", name="Approve").click()
    expect(page.locator(f"#run-{run.id} .card-message")).to_contain_text("Approved")
    live.until(lambda: status(run.id) == "completed", "the approved run")

    page.goto(live.url(f"/runs/{run.id}"))
    head = page.locator("#run-live .run-head")
    expect(head).to_contain_text("3 of 3 steps done")
    expect(head).to_contain_text(re.compile(r"Waited\s*\d+\.\d s"))
    check = page.locator("#step-check")
    expect(check).to_contain_text("Execution 1: attempt 1")
    expect(check).to_contain_text("RuntimeError: the first attempt fails")
    expect(check).to_contain_text("Execution 2: attempt 2")
    expect(check.locator(".step-times time")).to_have_count(4)  # 2 starts, a backoff's ends
    rest = page.locator("#step-rest")
    expect(rest.locator(".waited")).to_contain_text(re.compile(r"waited [12]\.\d s"))
    expect(rest).to_contain_text("Sleeping (ctx.wait)")
    # The execution that went to sleep may well have taken 0 ms of compute: what the page
    # must not do is present that as the step's whole time, which the waited time above shows.
    ask = page.locator("#step-ask")
    expect(ask).to_contain_text("Suspended")
    expect(ask).to_contain_text("(resumed)")
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.locator("#timeline-title").scroll_into_view_if_needed()
        screenshot(page, f"run-timeline-{width}")
        overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, f"the run page is {overflow} px wider than {width} px"


def test_a_failed_run_offers_rerun_and_no_placeholder(app, live, operator, define):
    page = operator
    wf = define("breaks", [("boom", code("raise ValueError('nope')"))])
    run, _ = domain.start_run(wf, {})
    live.until(lambda: status(run.id) == "failed", "the failed run")
    page.goto(live.url("/tasks"))
    expect(page.locator(f"#run-{run.id}").get_by_role("link", name="Re-run…")).to_be_visible()
    page.goto(live.url(f"/runs/{run.id}"))
    expect(page.locator("#run-live").get_by_role("link", name="Re-run…")).to_be_visible()
    for path in ("/tasks", f"/runs/{run.id}", "/approvals", "/workflows", "/outbox"):
        page.goto(live.url(path))
        assert "not available yet" not in page.inner_text("body").lower(), path


def test_the_header_folds_into_a_menu_on_a_phone(app, live, operator):
    page = operator
    page.goto(live.url("/tasks"))
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert (
        requests.get(live.url(icon), timeout=10).headers["Content-Type"].startswith("image/svg+xml")
    )
    toggle = page.get_by_role("button", name="Menu")
    expect(toggle).to_be_hidden()  # at 1280 px every section is in the bar
    expect(page.get_by_role("link", name="Approvals")).to_be_visible()

    page.set_viewport_size({"width": 390, "height": 844})
    header = page.locator("header.topbar")
    assert header.bounding_box()["height"] < 70
    expect(page.get_by_role("navigation", name="Sections")).to_be_hidden()
    screenshot(page, "header-390-closed")
    # From the keyboard: skip link, brand, then the Menu button.
    page.locator("a.brand").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()").endswith("Menu")
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    nav = page.get_by_role("navigation", name="Sections")
    expect(nav.get_by_role("link", name="Approvals")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Tasks"
    page.screenshot(path=str(SCREENSHOTS / "header-390-open.png"))
    page.keyboard.press("Escape")
    expect(nav).to_be_hidden()
    assert page.evaluate("document.activeElement.textContent.trim()").endswith("Menu")
    nav_toggle_open = toggle.get_attribute("aria-expanded")
    assert nav_toggle_open == "false"

    # A curl command scrolls sideways inside its block instead of being cut off.
    page.goto(live.url("/docs/api"))
    block = page.locator(".docs-page pre", has_text="curl").first
    block.scroll_into_view_if_needed()
    box = block.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    sizes = block.evaluate("b => [b.scrollWidth, b.clientWidth, getComputedStyle(b).overflowX]")
    assert sizes[2] == "auto"
    wide = page.locator(".docs-page pre").evaluate_all(
        "bs => bs.filter(b => b.scrollWidth > b.clientWidth).length"
    )
    assert wide > 0  # some lines are longer than a phone: they scroll, not wrap or clip
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "docs-api-390")
