"""The operations settings as a person sees them, in Chromium against a live stack: a run held
back by its workflow's concurrency limit says so on its card, the editor's workflow details
have the Operations fields, and a schedule's form has its overlap choice; screenshots at
1280 and 390 px."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from console import runs as domain
from console.auth import create_user
from tests.conftest import browser_log_in, run_status, screenshot
from tests.support import step

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.sqlite_only]


def test_a_run_over_the_concurrency_limit_says_it_waits(
    app: Any, live: Any, page: Any, define: Any, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    hold = (
        "import os, time\n"
        f"while not os.path.exists({str(release)!r}):\n    time.sleep(0.05)\n"
        "return 'done'"
    )
    workflow = define("gated", [step("hold", hold)], title="Gated", concurrency=1)
    first, _ = domain.start_run(workflow, {})
    live.until(lambda: run_status(first.id) == "running", "the first run to start")
    second, _ = domain.start_run(workflow, {})
    create_user("operator@example.com", "operator", "s3cret-pass")
    browser_log_in(page, live.base, "operator@example.com", "s3cret-pass")
    page.goto(live.url("/tasks?workflow=gated"))
    card = page.locator(f"[data-run='{second.id}']")
    expect(card.locator(".card-slots")).to_have_text("waiting: 1 of 1 running")
    screenshot(page, "operations-waiting-card-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(card.locator(".card-slots")).to_be_visible()
    screenshot(page, "operations-waiting-card-390")
    release.touch()
    live.until(lambda: run_status(second.id) == "completed", "the second run to complete")
    assert run_status(first.id) == "completed"


def test_the_editor_and_the_schedule_form_have_the_operations_fields(
    app: Any, live: Any, page: Any, define: Any
) -> None:
    define("ops", [step("one", "return 1")], title="Ops", concurrency=2, retention_days=30)
    create_user("editor@example.com", "editor", "s3cret-pass")
    browser_log_in(page, live.base, "editor@example.com", "s3cret-pass")
    page.goto(live.url("/workflows/ops"))
    expect(page.locator("#wf-concurrency")).to_have_value("2")
    expect(page.locator("#wf-retention")).to_have_value("30")
    page.locator("fieldset.operations").scroll_into_view_if_needed()
    screenshot(page, "operations-editor-1280")
    page.goto(live.url("/workflows/ops/schedules"))
    expect(page.get_by_label("Overlap", exact=False).first).to_be_visible()
    screenshot(page, "operations-schedule-form-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    screenshot(page, "operations-schedule-form-390")
