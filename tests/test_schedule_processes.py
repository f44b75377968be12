"""Schedules with real processes: ``flask scheduler`` (rq-scheduler 0.14 on rq 3), a real
``flask worker`` and the real Redis. Cron has minute granularity, so a test that needs a fire
waits for the next minute boundary, once; the others only watch the registrations.

Run alone with ``pytest -m slow tests/test_schedule_processes.py``.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from console import scheduling
from console.extensions import db
from console.models import Run, Schedule, ScheduleFire
from console.timeutil import utcnow
from tests.conftest import SCREENSHOTS, Processes, wait_for
from workers import schedules as registry

pytestmark = pytest.mark.slow

SCHEDULED = "rq:scheduler:scheduled_jobs"


def registered(redis_conn: Any) -> set[str]:
    return {
        m.decode()
        for m in redis_conn.zrange(SCHEDULED, 0, -1)
        if m.decode().startswith(registry.JOB_PREFIX)
    }


def expected(schedule_id: int, cron: str, tz: str) -> str:
    return registry.job_id(schedule_id, scheduling.next_fire(cron, tz, utcnow()))


def schedule_id(name: str) -> int:
    value = db.session.scalar(select(Schedule.id).filter_by(name=name))
    db.session.commit()
    return int(value)


def until(processes: Processes, predicate: Any, what: str, timeout: float = 30.0) -> Any:
    try:
        return wait_for(predicate, timeout, 0.2, message=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{processes.output()}") from None


def test_two_schedulers_start_exactly_one_run_per_fire(define, processes, redis_conn):
    define(
        "tick",
        [("one", "def run(ctx):\n    return ctx.input")],
        schedules=[
            {
                "name": "every_minute",
                "cron": "* * * * *",
                "timezone": "Europe/Berlin",
                "input": "def input(now):\n    return {'minute': now.strftime('%H:%M')}\n",
            }
        ],
    )
    sid = schedule_id("every_minute")
    processes.worker()
    processes.scheduler()
    processes.scheduler()

    def fired_and_done() -> bool:
        db.session.commit()  # end any read transaction first: its snapshot would be old
        db.session.expire_all()
        done = db.session.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.status == "completed", Run.trigger == "schedule:every_minute")
        )
        db.session.commit()
        return bool(done)

    until(processes, fired_and_done, "a scheduled run to complete", timeout=100)
    fires = db.session.execute(
        select(ScheduleFire.fire_at, ScheduleFire.status, ScheduleFire.run_id)
    ).all()
    runs = db.session.scalars(select(Run)).all()
    db.session.commit()
    # One fire row per fire time, each with its own run, and no run without a fire.
    assert len({f.fire_at for f in fires}) == len(fires) >= 1
    assert {f.status for f in fires} == {"started"}
    assert sorted(r.id for r in runs) == sorted(f.run_id for f in fires)
    first = min(fires, key=lambda f: f.fire_at)
    run = next(r for r in runs if r.id == first.run_id)
    local = first.fire_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert run.input == {"minute": local.strftime("%H:%M")}
    # The next fire is registered once, under its deterministic id.
    until(
        processes,
        lambda: registered(redis_conn) == {expected(sid, "* * * * *", "Europe/Berlin")},
        "the next fire to be registered",
    )


def test_edits_leave_no_orphans_and_a_restart_after_flushall_restores(
    define, api, processes, redis_conn
):
    code = "def run(ctx):\n    return 1"
    steps = [{"name": "one", "code": code}]
    daily = {"name": "daily", "cron": "0 9 * * *", "timezone": "Asia/Seoul"}
    define("report", steps, schedules=[daily])
    sid = schedule_id("daily")
    scheduler = processes.scheduler()
    until(
        processes,
        lambda: registered(redis_conn) == {expected(sid, "0 9 * * *", "Asia/Seoul")},
        "the schedule to be registered",
    )
    old = expected(sid, "0 9 * * *", "Asia/Seoul")

    # Edit the time and add a second schedule through the API (the definition's key).
    other = {"name": "hourly", "cron": "15 * * * *", "timezone": "UTC"}
    edited = dict(daily, cron="30 10 * * *")
    assert (
        api.put(
            "/api/workflows/report", json={"steps": steps, "schedules": [edited, other]}
        ).status_code
        == 200
    )
    hourly = schedule_id("hourly")
    want = {expected(sid, "30 10 * * *", "Asia/Seoul"), expected(hourly, "15 * * * *", "UTC")}
    until(processes, lambda: registered(redis_conn) == want, "the edited registrations")
    assert not redis_conn.exists(f"rq:job:{old}")

    # Rename (keeps the row), pause one, delete the other: no orphan job is left.
    row = db.session.get(Schedule, sid)
    scheduling.update_schedule(row, dict(edited, name="morning", enabled=False))
    assert (
        api.put(
            "/api/workflows/report",
            json={"steps": steps, "schedules": [dict(edited, name="morning", enabled=False)]},
        ).status_code
        == 200
    )
    until(processes, lambda: registered(redis_conn) == set(), "every registration to go")
    assert redis_conn.keys("rq:job:schedule-*") == []

    scheduling.set_enabled(db.session.get(Schedule, sid), True)
    again = {expected(sid, "30 10 * * *", "Asia/Seoul")}
    until(processes, lambda: registered(redis_conn) == again, "the re-enabled registration")

    # Redis loses everything while no scheduler runs; a restarted scheduler restores it.
    processes.kill_tree(scheduler)
    redis_conn.flushall()
    assert registered(redis_conn) == set()
    processes.scheduler()
    until(processes, lambda: registered(redis_conn) == again, "the registration after FLUSHALL")


@pytest.mark.browser
@pytest.mark.sqlite_only
def test_the_schedules_tab_in_a_browser(app, define, live, page):
    from console.auth import create_user
    from tests.conftest import browser_log_in, screenshot

    failing = "def input(now):\n    raise ValueError('no export for ' + now.date().isoformat())\n"
    define(
        "daily_report",
        [("one", "def run(ctx):\n    return ctx.input")],
        schedules=[
            {"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Berlin", "input": failing},
            {"name": "hourly", "cron": "15 * * * *", "timezone": "UTC", "enabled": False},
        ],
    )
    nightly = db.session.get(Schedule, schedule_id("nightly"))
    fire_at = scheduling.previous_fire(nightly.cron, nightly.timezone, utcnow())
    scheduling.fire(nightly.id, fire_at, registry.evaluate_input)
    create_user("editor@example.com", "editor", "s3cret-pass")
    browser_log_in(page, live.base, "editor@example.com", "s3cret-pass")
    page.goto(live.url("/workflows/daily_report/schedules"))
    card = page.locator("#schedule-nightly")
    assert "At 02:00, Europe/Berlin" in card.inner_text()
    assert "ValueError: no export for" in card.inner_text()
    # console.js shows the viewer's time (the browser is in Asia/Seoul) next to Berlin's.
    assert "UTC" not in card.locator("time").first.inner_text()

    form = page.locator("#add")
    form.get_by_label("Name").fill("daily_at_9am")
    form.get_by_label("Cron expression").fill("0 9 * * *")
    form.get_by_label("Timezone").fill("Asia/Seoul")
    preview = page.locator("#schedule-preview")
    preview.get_by_text("At 09:00, Asia/Seoul").wait_for()
    assert preview.locator("li").count() == 5
    form.get_by_label("Input").fill('{"type": "full"}')
    screenshot(page, "schedules-add-1280")
    form.get_by_role("button", name="Add schedule").click()
    page.locator("#schedule-daily_at_9am").wait_for()
    assert "Schedule daily_at_9am added." in page.inner_text("main")
    screenshot(page, "schedules-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "schedules-390")
    page.locator("#schedule-nightly").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "schedules-390-nightly.png"))  # the viewport only
    page.goto(live.url("/workflows/daily_report/schedules/daily_at_9am/edit"))
    screenshot(page, "schedules-edit-390")
    page.set_viewport_size({"width": 1280, "height": 900})
    screenshot(page, "schedules-edit-1280")
