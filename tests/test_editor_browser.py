"""The editor in Debian's Chromium against a live stack (web server, worker, scheduler)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from console.auth import create_user
from console.definitions import save_workflow
from console.extensions import db
from console.models import Run, Workflow
from tests.conftest import SCREENSHOTS, browser_log_in, run_status, screenshot
from tests.support import code

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.sqlite_only]


def type_code(page, card, lines: list[str]) -> None:
    """Replace a card's code by typing it, as a person does (CodeMirror indents after ':')."""
    card.locator(".CodeMirror").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    for index, line in enumerate(lines):
        if index:
            page.keyboard.press("Enter")  # the editor indents the next line itself
        page.keyboard.type(line)


def add_step(page, position: int, label: str) -> None:
    adder = page.locator("#steps > li.adder").nth(position)
    adder.locator("summary").click()
    adder.get_by_role("button", name=re.compile(label)).click()


def saved(card) -> None:
    card.get_by_role("button", name="Save step").click()


def test_build_test_publish_run_and_approve(app, live, page):
    create_user("maker@example.com", "admin", "s3cret-pass")
    browser_log_in(page, live.base, "maker@example.com", "s3cret-pass")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Workflows").click()
    assert page.get_by_text("No workflows yet").is_visible()
    page.get_by_label("Title").fill("Onboard customer")
    page.get_by_role("button", name="Create workflow").click()
    page.wait_for_url(live.url("/workflows/onboard_customer"))

    # Step 1: Python code, typed into the code editor.
    add_step(page, 0, "Python code")
    first = page.locator("#step-step_1")
    first.wait_for()
    # Wired as it arrives: no moment where the card is there and its code editor is not.
    assert first.locator(".CodeMirror").count() == 1
    type_code(
        page,
        first,
        [
            "def run(ctx):",
            "ctx.logger.info('greeting', who=ctx.input['name'])",
            "return {'greeting': 'Hello ' + ctx.input['name']}",
        ],
    )
    saved(first)
    page.locator("#step-step_1 .saved-note").wait_for()

    # Step 2: approval by email, configured by its form.
    add_step(page, 1, "Approval by email")
    approval = page.locator("#step-approval")
    approval.wait_for()
    approval.get_by_label("Subject").fill("Welcome {{ input.name }}?")
    approval.get_by_label("Subject").press("Tab")
    # Playwright's own waits: a wait_for_function string needs eval, which the console's
    # Content-Security-Policy refuses whenever the first check does not already pass.
    expect(page.locator("#gen-approval pre")).to_contain_text("Welcome")
    saved(approval)
    page.locator("#step-approval .saved-note").wait_for()

    # Step 3: Python code after the approval, renamed.
    add_step(page, 2, "Python code")
    last = page.locator("#step-step_3")  # named after the count: the third step
    last.wait_for()
    last.get_by_label("Step name").fill("finish")
    type_code(
        page,
        last,
        [
            "def run(ctx):",
            "greeting = ctx.steps.step_1.output['greeting']",
            "return {'greeting': greeting, 'approved': not ctx.steps.approval.timed_out}",
        ],
    )
    saved(last)
    page.locator("#step-finish .saved-note").wait_for()

    # The input: two required text fields, through the field builder (keyboard only).
    builder = page.locator("#input")
    builder.get_by_label("Field name").fill("name")
    builder.get_by_label("Required").check()
    builder.get_by_role("button", name="Save details and input").click()
    page.locator("#input .saved-note").wait_for()
    builder.locator("[name='fields-1-name']").fill("approver")
    builder.locator("[name='fields-1-required']").press("Space")
    builder.locator("[name='fields-1-required']").press("Enter")
    page.locator("#input [name='fields-2-name']").wait_for()
    titles = page.locator(".step-card .card-title").all_text_contents()
    assert titles == ["step_1", "approval", "finish"]

    # Test the first step on the worker (the test queue), with the workflow's one test input.
    first = page.locator("#step-step_1")
    assert page.locator("textarea[name=sample_input]").count() == 1  # not one per card
    page.locator("#test-input").get_by_label("Sample input (JSON)").fill(
        '{"name": "Ada", "approver": "boss@example.com"}'
    )
    first.locator(".test-panel summary").click()
    first.get_by_role("button", name="Test this step").click()
    result = page.locator("#test-step_1")
    result.get_by_text("completed").wait_for(timeout=60_000)
    assert "Hello Ada" in result.inner_text() and "greeting" in result.inner_text()

    # "Test up to here" on the last step: every step in order, each output passed on, the
    # approval's suspend reported rather than performed, with the resume_data typed for it.
    approval.locator(".test-panel summary").click()
    approval.get_by_label(re.compile("resume_data")).fill('{"decision": "approve"}')
    last = page.locator("#step-finish")
    last.locator(".test-panel summary").click()
    last.get_by_role("button", name="Test up to here").click()
    chain = page.locator("#test-finish")
    expect(chain.locator(".chain-results > li")).to_have_count(3)
    expect(chain.locator(".badge.status-completed")).to_have_count(3, timeout=60_000)
    assert chain.locator("h5").first.inner_text() == "step_1"
    expect(chain).to_contain_text("ctx.flow.suspend was called")
    expect(chain).to_contain_text('"greeting": "Hello Ada"')
    expect(chain).to_contain_text("resume_data given to: approval")
    last.locator(".test-panel").scroll_into_view_if_needed()
    screenshot(page, "editor-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "editor-390")
    # Viewport-sized views of the narrow layout, easier to look at than one tall image.
    for index, selector in enumerate(("#pipeline", "#step-approval", "#test-finish", "#input")):
        page.locator(selector).scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / f"editor-390-part{index + 1}.png"))
    page.set_viewport_size({"width": 1280, "height": 900})

    # Publish with a note, then start a run from the generated form.
    page.get_by_label("Note", exact=True).fill("First version")
    page.get_by_role("button", name="Publish").click()
    page.get_by_text("Published v1").wait_for()
    page.get_by_role("link", name="Start a run").first.click()
    page.get_by_role("textbox", name="name", exact=True).fill("Ada")
    page.get_by_role("button", name="Start run").click()
    page.get_by_text("This field is required.").wait_for()  # approver, left empty
    screenshot(page, "run-form-errors-1280")
    page.get_by_role("textbox", name="approver", exact=True).fill("boss@example.com")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-z]{26}$"))
    run_id = page.url.rsplit("/", 1)[1]
    live.until(lambda: run_status(run_id) == "suspended", "the run to wait for approval")

    # Approve from the run's card: what is being approved is on it, and so is the button.
    page.goto(live.url("/tasks"))
    card = page.locator(f"#run-{run_id}")
    expect(card.get_by_role("region", name="The approval email")).to_contain_text("Welcome Ada?")
    expect(card.locator("progress")).not_to_have_attribute("value", "3")  # waiting: not done
    card.get_by_role("button", name="Approve").click()
    live.until(lambda: run_status(run_id) == "completed", "the run to complete")

    # The timeline: the approval's wait is shown apart from the time its code took.
    page.goto(live.url(f"/runs/{run_id}"))
    assert page.get_by_text("completed").first.is_visible()
    expect(page.locator("#run-live .run-head")).to_contain_text("Waited")
    expect(page.locator("#step-approval")).to_contain_text("waited")
    screenshot(page, "walkthrough-timeline-1280")
    run = db.session.get(Run, run_id)
    assert run.output == {"greeting": "Hello Ada", "approved": True}


def publish(name: str, steps: int) -> None:
    save_workflow(
        {
            "name": name,
            "steps": [{"name": f"s{i}", "code": code(f"return {i}")} for i in range(1, steps + 1)],
        }
    )


def order_of(name: str) -> list[str]:
    db.session.expire_all()
    db.session.commit()
    workflow = db.session.scalar(db.select(Workflow).filter_by(name=name))
    definition = workflow.draft or workflow.latest_version.definition
    return [s["name"] for s in definition["steps"]]


def test_reorder_by_drag_and_keyboard_and_a_syntax_error_at_its_line(app, live, page):
    create_user("ed@example.com", "editor", "s3cret-pass")
    publish("ordered", 3)
    browser_log_in(page, live.base, "ed@example.com", "s3cret-pass")
    page.goto(live.url("/workflows/ordered"))

    # Published, unchanged cards start as one-line outlines; drag s3 by its handle above s1.
    assert page.locator("#body-s1").is_hidden()
    assert page.locator("#step-s1 .collapse-toggle").get_attribute("aria-expanded") == "false"
    expect(page.locator("#step-s1 .outline-summary")).to_have_text("2 lines: return 1")
    page.locator("#step-s3").scroll_into_view_if_needed()  # below the test input card
    handle = page.locator("#step-s3 .drag-handle").bounding_box()
    target = page.locator("#step-s1").bounding_box()
    page.mouse.move(handle["x"] + 5, handle["y"] + 5)
    page.mouse.down()
    page.mouse.move(handle["x"] + 5, handle["y"] - 20, steps=5)
    page.mouse.move(target["x"] + 30, target["y"] + 10, steps=25)
    page.mouse.up()
    live.until(lambda: order_of("ordered") == ["s3", "s1", "s2"], "the dragged order to save")
    page.reload()
    assert page.locator(".step-card .card-title").all_text_contents() == ["s3", "s1", "s2"]

    # Keyboard: open s3, focus "Move down" and press Enter twice; focus follows the card,
    # which stays open.
    page.get_by_role("button", name="Expand s3").press("Enter")
    page.locator("#step-s3 .move-down").focus()
    page.keyboard.press("Enter")
    live.until(lambda: order_of("ordered") == ["s1", "s3", "s2"], "the move to save")
    expect(page.locator(".step-card .card-title")).to_have_text(["s1", "s3", "s2"])
    expect(page.locator("#step-s3 .move-down")).to_be_focused()
    page.keyboard.press("Enter")
    live.until(lambda: order_of("ordered") == ["s1", "s2", "s3"], "the second move to save")
    page.reload()
    assert page.locator(".step-card .card-title").all_text_contents() == ["s1", "s2", "s3"]

    # A syntax error is shown at its line, highlighted in the editor; nothing is saved.
    card = page.locator("#step-s2")
    card.get_by_role("button", name="Expand s2").click()
    type_code(page, card, ["def run(ctx):", "x = [1, 2", "return x"])
    dirty = page.evaluate("document.querySelector('#step-s2 form').hasAttribute('data-dirty')")
    assert dirty
    saved(card)
    error = page.locator("#step-s2 .code-error")
    error.wait_for()
    assert re.match(r"line [23]: ", error.inner_text())
    page.locator("#step-s2 .CodeMirror .cm-error-line").wait_for()  # the editor marks it too
    assert page.locator("#step-s2 .CodeMirror .cm-error-line").count() == 1
    assert "x = [1, 2" in page.locator("#step-s2 .CodeMirror").inner_text()  # text kept
    assert order_of("ordered") == ["s1", "s2", "s3"]
    workflow = db.session.scalar(db.select(Workflow).filter_by(name="ordered"))
    assert workflow.draft["steps"][1]["code"] == code("return 2")
    screenshot(page, "editor-syntax-error-1280")

    # Leaving with unsaved changes asks first.
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.type), d.dismiss()))
    page.get_by_role("link", name="Versions").click()
    assert dialogs == ["beforeunload"]


def test_screenshots_of_the_workflow_pages(app, live, page):
    create_user("ed@example.com", "admin", "s3cret-pass")
    create_user("viewer@example.com", "viewer", "s3cret-pass")
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": "string", "description": "Who approves"},
            "plan": {"type": "string", "enum": ["free", "pro"]},
            "urgent": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["email"],
    }
    steps = [
        {"name": "fetch", "code": code("return {'id': 1}")},
        {"name": "notify", "code": code("return 2"), "retries": 1},
    ]
    save_workflow({"name": "shots", "title": "Screenshots", "steps": steps}, note="first")
    steps[1]["code"] = code("x = ctx.steps.fetch.output\nreturn x")
    steps.append({"name": "finish", "code": code("return 3")})
    save_workflow(
        {
            "name": "shots",
            "title": "Screenshots",
            "input_schema": schema,
            "steps": [steps[1], steps[0], steps[2]],
        },
        note="reordered",
    )
    browser_log_in(page, live.base, "ed@example.com", "s3cret-pass")
    pages = {
        "workflows": "/workflows",
        "versions": "/workflows/shots/versions",
        "compare": "/workflows/shots/compare?old=v1&new=v2",
        "run-form": "/workflows/shots/run",
    }
    for name, path in pages.items():
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(live.url(path))
            screenshot(page, f"{name}-{width}")
            # The content (not the shared top bar) fits the width: nothing sticks out sideways.
            overflow = page.evaluate(
                "(() => { const m = document.querySelector('main');"
                " return m.scrollWidth - m.clientWidth; })()"
            )
            assert overflow <= 0, f"{path} at {width} px: content wider by {overflow} px"
    page.goto(live.url("/workflows/shots/compare?old=v1&new=v2"))
    assert page.get_by_text("moved from 1 to 2").is_visible()

    page.context.clear_cookies()
    browser_log_in(page, live.base, "viewer@example.com", "s3cret-pass")
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(live.url("/workflows/shots"))
        screenshot(page, f"editor-viewer-{width}")
    assert page.get_by_role("button", name="Save step").count() == 0
