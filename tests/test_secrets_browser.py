"""The Secrets page in Chromium against a live stack: add, replace and delete (after the
confirmation naming the workflows using it) with htmx; a run that reads the secret on a real
worker shows it masked on the run page; screenshots at 1280 and 390 px."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from console import runs as domain
from console import secrets
from console.auth import create_user
from console.extensions import db
from console.models import Run
from tests.conftest import browser_log_in, screenshot
from tests.support import code

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.sqlite_only]

VALUE = "zq-browser-secret-4471"


def status(run_id: str) -> str:
    db.session.commit()
    db.session.expire_all()
    return str(db.session.get(Run, run_id).status)


def test_secrets_page_round_trip(app, live, page, define):
    create_user("ed@example.com", "editor", "s3cret-pass")
    browser_log_in(page, live.base, "ed@example.com", "s3cret-pass")
    page.goto(live.url("/secrets"))
    expect(page.get_by_role("heading", name="Secrets")).to_be_visible()
    expect(page.get_by_text("No secrets yet")).to_be_visible()

    page.get_by_label("Name", exact=True).fill("API_TOKEN")
    value = page.get_by_label("Value", exact=True)
    assert value.get_attribute("type") == "password"
    value.fill(VALUE)
    page.get_by_role("button", name="Add secret").click()
    expect(page.get_by_role("alert")).to_contain_text("Secret API_TOKEN added.")
    expect(page.locator("#secret-API_TOKEN")).to_contain_text("ed@example.com")
    assert VALUE not in page.content()
    assert page.get_by_label("Value", exact=True).input_value() == ""  # not shown back

    workflow = define(
        "uses_token",
        [
            (
                "call",
                code("print('token', ctx.secrets['API_TOKEN'])\nreturn ctx.secrets['API_TOKEN']"),
            )
        ],
    )
    run, _ = domain.start_run(workflow, {})
    live.until(lambda: status(run.id) == "completed", "the run")
    page.goto(live.url(f"/runs/{run.id}"))
    expect(page.locator("body")).to_contain_text("[secret API_TOKEN]")
    assert VALUE not in page.content()

    page.goto(live.url("/secrets"))
    expect(page.locator("#secret-API_TOKEN .used-by")).to_contain_text("uses_token")
    page.get_by_label("Name", exact=True).fill("SMTP_PASSWORD")
    page.get_by_label("Value", exact=True).fill("another-value")
    page.get_by_role("button", name="Add secret").click()
    expect(page.locator("#secret-SMTP_PASSWORD")).to_be_visible()
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        screenshot(page, f"secrets-{width}")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_label("New value of API_TOKEN").fill("replaced-value-1")
    page.get_by_role("button", name="Replace the value of API_TOKEN").click()
    expect(page.get_by_role("alert")).to_contain_text("Secret API_TOKEN replaced.")
    assert secrets.step_secrets()["API_TOKEN"] == "replaced-value-1"

    page.get_by_role("link", name="Delete API_TOKEN").click()
    expect(page.locator(".warning")).to_contain_text("uses_token")
    screenshot(page, "secrets-delete-1280")
    page.get_by_role("button", name="Delete API_TOKEN").click()
    expect(page.get_by_role("alert")).to_contain_text("Secret API_TOKEN deleted.")
    expect(page.locator("#secret-API_TOKEN")).to_have_count(0)
    db.session.commit()
    assert list(secrets.step_secrets()) == ["SMTP_PASSWORD"]
