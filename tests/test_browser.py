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
