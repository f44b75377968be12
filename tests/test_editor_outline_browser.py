"""Long workflows in the editor, in Debian's Chromium against a live stack: published,
unchanged cards as one-line outlines, "Outline all" / "Expand all" by keyboard, a new step
named after the count, a test that takes a past run's input and outputs, and the Schedules
page with the workflow's tab bar."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from console import drafts, stepkinds
from console import runs as domain
from console.auth import create_user
from console.definitions import save_workflow
from console.extensions import db
from console.models import Workflow
from tests.conftest import SCREENSHOTS, browser_log_in, run_status, screenshot
from tests.support import code

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.sqlite_only]


def long_workflow() -> Workflow:
    steps = [
        {"name": "fetch", "code": code("return {'id': ctx.input['n'] * 10}")},
        {
            "name": "wait_a_bit",
            "kind": "delay",
            "config": {"duration": "1s"},
            "code": stepkinds.generate_code("delay", {"duration": "1s"}),
        },
        {"name": "report", "code": code("return {'id': ctx.steps.fetch.output['id']}")},
        {"name": "finish", "code": code("return {'done': ctx.steps.report.output}")},
    ]
    schema = {"type": "object", "properties": {"n": {"type": "integer", "examples": [4]}}}
    workflow, _, _ = save_workflow({"name": "long", "steps": steps, "input_schema": schema})
    # The draft changes one step: that card starts open, the others as outlines.
    definition = drafts.editable_definition(workflow)
    definition["steps"][2]["code"] = code("return {'id': ctx.steps.fetch.output['id'] + 1}")
    drafts.save_draft(workflow, definition, workflow.draft_revision, "ed@example.com")
    db.session.commit()
    return workflow


def test_outline_expand_all_new_step_and_schedules_tab(app, live, page):
    create_user("ed@example.com", "admin", "s3cret-pass")
    workflow = long_workflow()
    run, _ = domain.start_run(workflow, {"n": 7})
    live.until(lambda: run_status(run.id) == "completed", "the run to complete")
    browser_log_in(page, live.base, "ed@example.com", "s3cret-pass")
    page.goto(live.url("/workflows/long"))

    # Published, unchanged steps are one line each: name, kind and a summary of the config.
    for name in ("fetch", "wait_a_bit", "finish"):
        expect(page.locator(f"#body-{name}")).to_be_hidden()
    expect(page.locator("#body-report")).to_be_visible()
    expect(page.locator("#step-wait_a_bit .outline-summary")).to_contain_text("duration: 1s")
    expect(page.locator("#step-wait_a_bit .kind")).to_have_text(re.compile("Delay"))
    outline_height = page.locator("#steps").bounding_box()["height"]
    screenshot(page, "editor-outline-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "editor-outline-390")
    overflow = page.evaluate(
        "(() => { const m = document.querySelector('main');"
        " return m.scrollWidth - m.clientWidth; })()"
    )
    assert overflow <= 0, f"the outline at 390 px is wider by {overflow} px"
    page.set_viewport_size({"width": 1280, "height": 900})

    # Expand all, then outline all again, by keyboard.
    page.get_by_role("button", name="Expand all").focus()
    page.keyboard.press("Enter")
    for name in ("fetch", "wait_a_bit", "report", "finish"):
        expect(page.locator(f"#body-{name}")).to_be_visible()
    assert page.locator("#steps").bounding_box()["height"] > 2 * outline_height
    page.get_by_role("button", name="Outline all").focus()
    page.keyboard.press("Space")
    for name in ("fetch", "wait_a_bit", "report", "finish"):
        expect(page.locator(f"#body-{name}")).to_be_hidden()
    expect(page.get_by_role("button", name="Outline all")).to_have_attribute("aria-pressed", "true")
    toggle = page.get_by_role("button", name="Expand finish")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#body-finish")).to_be_visible()
    expect(page.get_by_role("button", name="Collapse finish")).to_be_focused()

    # Test "finish" with the run's input and its steps' outputs.
    page.locator("#test-input").get_by_label("Use the input and outputs of run").select_option(
        run.id
    )
    finish = page.locator("#step-finish")
    finish.locator(".test-panel summary").click()
    finish.get_by_role("button", name="Test this step").click()
    result = page.locator("#test-finish")
    result.get_by_text("completed").wait_for(timeout=60_000)
    expect(result).to_contain_text('"id": 70')
    screenshot(page, "editor-test-panel-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    result.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "editor-test-panel-390.png"))
    page.set_viewport_size({"width": 1280, "height": 900})

    # A new code step is named after the count.
    adder = page.locator("#steps > li.adder").last
    adder.locator("summary").click()
    adder.get_by_role("button", name=re.compile("Python code")).click()
    expect(page.locator("#step-step_5 .card-title")).to_have_text("step_5")

    # The Schedules page keeps the workflow's tab bar.
    page.get_by_role("navigation", name="Workflow").get_by_role("link", name="Schedules").click()
    tabs = page.get_by_role("navigation", name="Workflow")
    expect(tabs.get_by_role("link", name="Schedules")).to_have_attribute("aria-current", "page")
    expect(tabs.get_by_role("link", name="Editor")).to_be_visible()
    screenshot(page, "schedules-tabs-1280")
