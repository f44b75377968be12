"""The Re-run dialog and Recover from a journal in Chromium against a live stack (web server,
worker and scheduler as real processes): the dialog's plan is the dry run's and the re-run
follows it, a refusal shows at its field, the Recover page previews and confirms a journal
exported from a run, viewers see neither; screenshots at 1280 and 390 px."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from console import runs as domain
from console.auth import create_user
from console.extensions import db
from console.models import Run
from tests.conftest import browser_log_in, run_status, screenshot
from tests.support import step

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.sqlite_only]

STEPS = [
    step("fetch", "return {'n': ctx.input.get('n', 1)}"),
    step("double", "return ctx.steps.fetch.output['n'] * 2"),
    step("report", "return 'reported'"),
]


def fresh(run_id: str) -> Run:
    db.session.commit()
    db.session.expire_all()
    run = db.session.get(Run, run_id)
    db.session.refresh(run)
    return run


def finished_run(live: Any, define: Any) -> Run:
    workflow = define("numbers", STEPS, title="Numbers")
    run, _ = domain.start_run(workflow, {"n": 3})
    live.until(lambda: run_status(run.id) == "completed", "the run to complete")
    return fresh(run.id)


def dry_run(run: Run, **body: Any) -> list[list[str]]:
    plan, _, _ = domain.rerun_plan(fresh(run.id), domain.RerunRequest.parse(body))
    db.session.commit()
    return [[s["name"], s["action"], s["reason"]] for s in plan.view()["steps"]]


def shown_plan(page: Any) -> list[list[str]]:
    rows = page.locator("#rerun-plan tbody tr")
    return [
        [
            row.get_attribute("data-step"),
            (row.get_attribute("class") or "").removeprefix("plan-"),
            row.locator("td.reason").inner_text().strip(),
        ]
        for row in rows.all()
    ]


def log_in_as(page: Any, live: Any, role: str) -> None:
    create_user(f"{role}@example.com", role, "s3cret-pass")
    browser_log_in(page, live.base, f"{role}@example.com", "s3cret-pass")


def test_the_rerun_dialog_shows_the_dry_run_and_starts_that_plan(app, live, page, define):
    run = finished_run(live, define)
    log_in_as(page, live, "operator")
    page.goto(live.url(f"/runs/{run.id}"))
    opener = page.get_by_role("link", name="Re-run…")
    opener.focus()
    page.keyboard.press("Enter")  # keyboard reachable
    dialog = page.locator("#rerun-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("textarea")).to_have_value('{\n  "n": 3\n}')
    assert shown_plan(page) == dry_run(run)

    # Choosing the step picks "From a step"; the preview is the dry run of that.
    dialog.get_by_label("From step").select_option("double")
    expected = dry_run(run, from_step="double")
    assert [a for _, a, _ in expected] == ["reuse", "execute", "execute"]
    expect(page.locator("#rerun-plan tr.plan-reuse")).to_have_count(1)
    assert shown_plan(page) == expected
    expect(dialog.get_by_label("From a step (the steps before it are reused)")).to_be_checked()

    # A refusal shows at its field and keeps what was typed.
    dialog.locator("textarea").fill('{"n": ')
    expect(page.locator("#rerun-input-errors")).to_contain_text("not valid JSON")
    expect(dialog.locator("textarea")).to_have_value('{"n": ')
    dialog.locator("textarea").fill('{"n": 5}')
    expect(page.locator("#rerun-input-errors")).to_be_empty()
    expect(page.locator("#rerun-plan tr.plan-reuse")).to_have_count(1)

    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)
        screenshot(page, f"rerun-dialog-{width}")
    # The dialog scrolls within a narrow screen: its buttons are there at the end.
    dialog.evaluate("d => d.scrollTo(0, d.scrollHeight)")
    expect(dialog.get_by_role("button", name="Re-run", exact=True)).to_be_in_viewport()
    screenshot(page, "rerun-dialog-390-end")
    page.set_viewport_size({"width": 1280, "height": 900})

    dialog.get_by_role("button", name="Re-run", exact=True).click()
    page.wait_for_url(lambda url: "/runs/" in url and run.id not in url)
    new_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    new = fresh(new_id)
    assert new.rerun_of == run.id and new.input == {"n": 5}
    assert {row.name for row in new.steps if row.reused} == {"fetch"}
    expect(page.locator(".flash")).to_contain_text("1 step reused, 2 to execute")
    live.until(lambda: run_status(new_id) == "completed", "the re-run to complete")
    page.reload()
    head = page.locator(".run-head")
    expect(head.get_by_role("link", name=run.id).first).to_be_visible()  # re-run of
    fetch = page.locator("#step-fetch")
    expect(fetch.locator(".badge.reused")).to_be_visible()
    expect(fetch.get_by_role("link", name=run.id)).to_be_visible()  # the run it came from
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        screenshot(page, f"rerun-run-page-{width}")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert fresh(new_id).steps and {s.name: s.output for s in fresh(new_id).steps}["double"] == 6

    # The original's page links to its re-run; the same dialog opens from its Tasks card.
    page.goto(live.url(f"/runs/{run.id}"))
    expect(page.locator(".run-head .lineage").get_by_role("link", name=new_id)).to_be_visible()
    page.goto(live.url("/tasks"))
    page.locator(f"#run-{run.id}").get_by_role("link", name="Re-run…").click()
    expect(page.locator("#rerun-dialog")).to_be_visible()
    expect(page.locator("#rerun-form-title")).to_contain_text(run.id)
    assert shown_plan(page) == dry_run(run)
    page.keyboard.press("Escape")
    expect(page.locator("#rerun-dialog")).to_be_hidden()


def test_recover_uploads_a_journal_previews_and_confirms(app, live, page, define, tmp_path):
    run = finished_run(live, define)
    log_in_as(page, live, "operator")
    download = page.request.get(live.url(f"/api/runs/{run.id}/journal"))
    assert download.ok and "attachment" in download.headers["content-disposition"]
    journal = Path(tmp_path) / "journal.json"
    journal.write_bytes(download.body())

    page.goto(live.url("/tasks"))
    page.get_by_role("link", name="Recover from a journal…").click()
    expect(page.get_by_role("heading", name="Recover from a journal")).to_be_visible()
    page.get_by_label("Journal file (JSON)").set_input_files(str(journal))
    page.get_by_role("button", name="Preview").click()
    preview = page.locator(".recover-preview")
    expect(preview).to_contain_text("pinned to v1")
    expect(preview.locator("tbody tr")).to_have_count(3)
    expect(preview.locator("tbody tr.plan-reuse")).to_have_count(3)
    expect(preview).to_contain_text("completed in the journal")
    before = db.session.scalar(db.select(db.func.count()).select_from(Run))
    db.session.commit()
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        screenshot(page, f"recover-preview-{width}")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert before == 1  # the preview created nothing

    preview.get_by_role("button", name="Start the recovered run").click()
    page.wait_for_url(lambda url: "/runs/" in url and run.id not in url)
    new = fresh(page.url.rstrip("/").rsplit("/", 1)[-1])
    assert new.recovered_from == run.id and new.trigger == "recover"
    head = page.locator(".run-head")
    expect(head).to_contain_text("Recovered from")
    expect(head.get_by_role("link", name=run.id)).to_be_visible()

    # A journal that is not one: each problem on a line of its own, with its path.
    bad = Path(tmp_path) / "bad.json"
    bad.write_text('{"format": "nope", "workflow": "Bad", "entries": [{"seq": 0}]}')
    page.goto(live.url("/tasks/recover"))
    page.get_by_label("Journal file (JSON)").set_input_files(str(bad))
    page.get_by_role("button", name="Preview").click()
    problems = page.locator("#recover-problems li")
    expect(problems.filter(has_text="/format")).to_have_count(1)
    expect(problems.filter(has_text="/entries/0/seq")).to_have_count(1)
    assert problems.count() >= 4
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        screenshot(page, f"recover-problems-{width}")


def test_viewers_see_no_rerun_and_the_routes_refuse_them(app, live, page, define):
    run = finished_run(live, define)
    log_in_as(page, live, "viewer")
    page.goto(live.url(f"/runs/{run.id}"))
    expect(page.get_by_role("link", name="Download journal")).to_be_visible()
    expect(page.get_by_text("Re-run…")).to_have_count(0)
    page.goto(live.url("/tasks"))
    expect(page.locator(f"#run-{run.id}")).to_be_visible()
    expect(page.get_by_text("Re-run…")).to_have_count(0)
    expect(page.get_by_text("Recover from a journal")).to_have_count(0)
    assert page.request.get(live.url(f"/runs/{run.id}/rerun")).status == 403
    assert page.request.get(live.url("/tasks/recover")).status == 403
