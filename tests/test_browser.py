"""The browser harness itself: Debian's Chromium against a live stack, and the vendored files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from console.auth import create_user
from tests.conftest import ROOT, browser_log_in


def test_vendored_front_end_files_match_their_manifest() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/vendor.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.sqlite_only
def test_log_in_and_see_the_sections(app, live, page) -> None:
    create_user("viewer@example.com", "viewer", "s3cret-pass")
    page.goto(live.url("/tasks"))
    assert "/login" in page.url  # anonymous: sent to the login page
    browser_log_in(page, live.base, "viewer@example.com", "s3cret-pass")
    nav = page.get_by_role("navigation", name="Sections")
    for section in ("Tasks", "Approvals", "Workflows"):
        assert nav.get_by_role("link", name=section).is_visible()
    assert nav.get_by_role("link", name="Users").count() == 0  # admins only
    assert page.evaluate("typeof htmx") == "object"  # the vendored htmx loaded


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.sqlite_only
def test_dates_show_in_the_viewers_timezone(app, live, page, define) -> None:
    """The page fixture's browser is in Asia/Seoul (UTC+9): 03:04:05 UTC reads 12:04:05."""
    from datetime import UTC, datetime

    from sqlalchemy import update

    from console import runs as domain
    from console.extensions import db
    from console.models import Run

    create_user("viewer@example.com", "viewer", "s3cret-pass")
    workflow = define("clock", [("a", "def run(ctx):\n    return 1")])
    run, _ = domain.start_run(workflow, {})
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    db.session.execute(update(Run).where(Run.id == run.id).values(created_at=created))
    db.session.commit()

    browser_log_in(page, live.base, "viewer@example.com", "s3cret-pass")
    page.goto(live.url(f"/runs/{run.id}"))
    shown = page.locator(f'time[datetime^="{created.strftime("%Y-%m-%dT%H:%M:%S")}"]').first
    assert shown.get_attribute("title") == "2026-01-02T03:04:05.000Z"
    assert "12:04:05" in shown.inner_text() and "2026" in shown.inner_text()


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.sqlite_only
def test_docs_pages_at_desktop_and_phone_widths(app, live, page) -> None:
    """The editor's help link opens the snippet API page; the page fits a phone's width."""
    from tests.conftest import screenshot

    create_user("viewer@example.com", "viewer", "s3cret-pass")
    browser_log_in(page, live.base, "viewer@example.com", "s3cret-pass")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Docs").click()
    page.get_by_role("navigation", name="Documentation").get_by_role("link", name="Steps").click()
    page.locator("#ctx-reference").wait_for()
    screenshot(page, "docs-steps-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live.url("/docs/steps#ctx-reference"))
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the phone"
    screenshot(page, "docs-steps-390")
