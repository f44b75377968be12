"""Schedules: fire times across DST with fixed clocks, validation, syncing from definitions,
one run per fire, missed fires, input snippets, registration in Redis and the Schedules tab.

The slow tests with real ``flask scheduler`` processes are in ``test_schedule_processes.py``.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import pytest
from sqlalchemy import func, select

from console import scheduling
from console.auth import create_user
from console.extensions import db
from console.models import Run, Schedule, ScheduleFire, Workflow
from tests.support import details_by_path, log_in, step
from workers import schedules as registry
from workers.app import get_app


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def fires(cron: str, tz: str, after: datetime, count: int = 4) -> list[datetime]:
    return list(islice(scheduling.fire_times(cron, tz, after), count))


# ------------------------------------------------------------------------ fire times, DST


def test_berlin_spring_forward_fires_a_missing_time_once_at_the_next_valid_minute():
    # 29 March 2026: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    assert fires("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12)) == [
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST, the next valid minute
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        utc(2026, 3, 31, 0, 30),
        utc(2026, 4, 1, 0, 30),
    ]


def test_every_quarter_hour_across_the_gap_fires_once_at_its_end():
    # 02:00, 02:15, 02:30 and 02:45 do not exist: one fire at 03:00, then on as usual.
    assert fires("*/15 * * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 30), 4) == [
        utc(2026, 3, 29, 0, 45),  # 01:45 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST
        utc(2026, 3, 29, 1, 15),
        utc(2026, 3, 29, 1, 30),
    ]


def test_berlin_fall_back_fires_an_ambiguous_time_once():
    # 25 October 2026: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    assert fires("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30),  # the first 02:30 (CEST)
        utc(2026, 10, 26, 1, 30),  # the next day, 02:30 CET
    ]
    # Hourly: 02:00 fires once, not again an hour later.
    assert fires("0 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 30), 3) == [
        utc(2026, 10, 25, 0, 0),  # 02:00 CEST
        utc(2026, 10, 25, 2, 0),  # 03:00 CET
        utc(2026, 10, 25, 3, 0),
    ]
    # Asked from inside the repeated hour (the second 02:10), the passed 02:30 does not fire.
    assert fires("30 2 * * *", "Europe/Berlin", utc(2026, 10, 25, 1, 10), 1) == [
        utc(2026, 10, 26, 1, 30)
    ]


def test_new_york_dst_changes():
    # 8 March 2026: 02:00 EST jumps to 03:00 EDT.
    assert fires("0 2 * * *", "America/New_York", utc(2026, 3, 7, 12), 2) == [
        utc(2026, 3, 8, 7, 0),  # 03:00 EDT
        utc(2026, 3, 9, 6, 0),  # 02:00 EDT
    ]
    assert fires("*/30 * * * *", "America/New_York", utc(2026, 3, 8, 6, 0), 3) == [
        utc(2026, 3, 8, 6, 30),  # 01:30 EST
        utc(2026, 3, 8, 7, 0),  # 03:00 EDT: 02:00 and 02:30 fire once, here
        utc(2026, 3, 8, 7, 30),
    ]
    # 1 November 2026: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice, fires once.
    assert fires("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), 2) == [
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT
        utc(2026, 11, 2, 6, 30),  # 01:30 EST
    ]


def test_day_of_month_or_day_of_week():
    # Standard cron: with both restricted, either matches (the 13th, and every Friday).
    assert fires("0 12 13 * FRI", "Europe/Berlin", utc(2026, 12, 1), 4) == [
        utc(2026, 12, 4, 11),
        utc(2026, 12, 11, 11),
        utc(2026, 12, 13, 11),  # a Sunday, the 13th
        utc(2026, 12, 18, 11),
    ]
    assert fires("0 9 * * 1-5", "Asia/Seoul", utc(2026, 11, 20, 12), 2) == [
        utc(2026, 11, 23, 0),  # Monday 09:00 KST; not the weekend
        utc(2026, 11, 24, 0),
    ]


def test_fire_time_checks_and_previous_fire():
    assert scheduling.is_fire_time("30 2 * * *", "Europe/Berlin", utc(2026, 3, 29, 1, 0))
    assert not scheduling.is_fire_time("30 2 * * *", "Europe/Berlin", utc(2026, 3, 29, 1, 1))
    assert scheduling.previous_fire("0 9 * * *", "Asia/Seoul", utc(2026, 11, 22, 0, 0)) == utc(
        2026, 11, 22, 0, 0
    )
    assert scheduling.previous_fire("0 9 * * *", "Asia/Seoul", utc(2026, 11, 21, 23, 59)) == utc(
        2026, 11, 21, 0, 0
    )


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("0 9 * * *", "At 09:00, Asia/Seoul"),
        ("30 8 * * 1-5", "At 08:30, Monday through Friday, Asia/Seoul"),
        ("15 10 * * MON,FRI", "At 10:15, only on Monday and Friday, Asia/Seoul"),
        ("0 9,17 * * *", "At 09:00 and 17:00, Asia/Seoul"),
        ("0 0 1 * *", "At 00:00, on day 1 of the month, Asia/Seoul"),
        ("0 0 1 1 *", "At 00:00, on day 1 of the month, only in January, Asia/Seoul"),
        ("5 * * * *", "At 5 minutes past the hour, Asia/Seoul"),
        ("*/15 * * * *", "Every 15 minutes, Asia/Seoul"),
        ("* * * * *", "Every minute, Asia/Seoul"),
        (
            "0 9 1-7 * 1",
            "At 09:00, between day 1 and 7 of the month, or on Monday, Asia/Seoul",
        ),
    ],
)
def test_cron_in_words(cron, words):
    assert scheduling.explain(cron, "Asia/Seoul") == words


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("every day", "must have 5 fields"),
        ("0 9 * * * *", "must have 5 fields"),
        ("61 * * * *", "minute: 61 is out of range 0-59"),
        ("0 24 * * *", "hour: 24 is out of range 0-23"),
        ("0 9 0 * *", "day of month: 0 is out of range 1-31"),
        ("0 9 * 13 *", "month: 13 is out of range 1-12"),
        ("0 9 * * MON-XYZ", "day of week: 'XYZ' is not a number or a name like MON"),
        ("*/0 * * * *", "minute: the step '0' must be a positive number"),
        ("5-1 * * * *", "minute: the range '5-1' goes backwards"),
        ("0 0 30 2 *", "never matches a date"),
    ],
)
def test_cron_errors_say_what_is_wrong(cron, message):
    assert message in (scheduling.cron_error(cron) or "")


def test_valid_cron_shapes():
    for cron in ("0 9 * * *", "*/5 1-3,22 * JAN-MAR sun", "0 0 1,15 * *", "0 12 * * 7"):
        assert scheduling.cron_error(cron) is None, cron


# ------------------------------------------------------------------- definitions and sync


def put(api: Any, name: str, body: dict[str, Any]) -> Any:
    return api.put(f"/api/workflows/{name}", json=body)


def daily(**fields: Any) -> dict[str, Any]:
    return {"name": "daily", "cron": "0 9 * * *", "timezone": "Asia/Seoul", "input": {}, **fields}


def test_bad_schedules_are_refused_with_a_message_each(api):
    body = {
        "steps": [step()],
        "schedules": [
            daily(cron="0 25 * * *", timezone="Mars/Olympus"),
            daily(input="def make(now):\n    return {}\n"),
            daily(name="hourly", input="def input(now)\n    return {}\n", missed="sometimes"),
            daily(name="Bad-Name", input=[1], enabled="yes"),
        ],
    }
    response = put(api, "greet", body)
    assert response.status_code == 422
    assert details_by_path(response) == {
        "/schedules/0/cron": "hour: 25 is out of range 0-23",
        "/schedules/0/timezone": (
            "unknown timezone 'Mars/Olympus' (use an IANA name such as Asia/Seoul)"
        ),
        "/schedules/1/input": "the snippet does not define input(now)",
        "/schedules/1/name": "duplicate schedule name 'daily'",
        "/schedules/2/input": "line 1: expected ':'",
        "/schedules/2/missed": "must be one of latest, skip, all",
        "/schedules/3/name": "must match ^[a-z][a-z0-9_]{0,62}$",
        "/schedules/3/input": "must be a JSON object or a snippet defining input(now)",
        "/schedules/3/enabled": "must be true or false",
    }
    assert api.get("/api/workflows").json["data"] == []


def test_a_json_input_the_input_schema_refuses_is_refused_at_save(api):
    schema = {
        "type": "object",
        "properties": {"date": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["date"],
    }
    body = {
        "input_schema": schema,
        "steps": [step()],
        "schedules": [
            daily(input={"date": "2026-01-01"}),
            daily(name="weekly", input={"limit": "ten"}),
            daily(name="nightly", input="def input(now):\n    return {}\n"),
        ],
    }
    response = put(api, "greet", body)
    assert response.status_code == 422
    assert details_by_path(response) == {
        "/schedules/1/input": (
            "does not satisfy the workflow's input schema: 'date' is a required property; "
            "/limit: 'ten' is not of type 'integer'"
        )
    }
    assert api.get("/api/workflows").json["data"] == []
    body["schedules"][1]["input"] = {"date": "2026-01-01", "limit": 10}
    assert put(api, "greet", body).status_code in (200, 201)


def test_definitions_replace_schedules_by_name_without_publishing(app, api):
    app.config["CONSOLE_TIMEZONE"] = "Europe/Berlin"
    first = put(
        api,
        "greet",
        {"steps": [step()], "schedules": [daily(), {"name": "nightly", "cron": "0 2 * * *"}]},
    )
    assert first.json == {"name": "greet", "version": "v1", "published": True}
    shown = api.get("/api/workflows/greet").json
    assert shown["schedules"] == [
        daily(enabled=True),
        {
            "name": "nightly",
            "cron": "0 2 * * *",
            "timezone": "Europe/Berlin",
            "input": {},
            "enabled": True,
        },
    ]
    daily_id = db.session.scalar(select(Schedule.id).filter_by(name="daily"))
    db.session.add(ScheduleFire(schedule_id=daily_id, fire_at=utc(2026, 1, 1), status="skipped"))
    db.session.commit()

    # Only the schedules change: no new version; "daily" keeps its row and history, "nightly"
    # is deleted, "weekly" created.
    snippet = "def input(now):\n    return {'date': now.date().isoformat()}\n"
    second = put(
        api,
        "greet",
        {
            "steps": [step()],
            "schedules": [
                daily(cron="0 10 * * *", input=snippet, missed="all", enabled=False),
                {"name": "weekly", "cron": "0 8 * * MON", "timezone": "UTC"},
            ],
        },
    )
    assert second.json == {"name": "greet", "version": "v1", "published": False}
    rows = {s.name: s for s in db.session.scalars(select(Schedule))}
    assert set(rows) == {"daily", "weekly"}
    assert rows["daily"].id == daily_id and rows["daily"].input_code == snippet
    assert db.session.scalar(select(func.count()).select_from(ScheduleFire)) == 1
    shown = api.get("/api/workflows/greet").json
    assert shown["schedules"][0] == daily(
        cron="0 10 * * *", input=snippet, missed="all", enabled=False
    )
    # A version's definition has no schedules; the export has the current ones.
    assert "schedules" not in api.get("/api/workflows/greet/versions/v1").json

    # Without the key (the editor's publishing), the schedules stay as they are.
    third = put(api, "greet", {"steps": [step("one", "return 2")]})
    assert third.json["version"] == "v2"
    assert {s.name for s in db.session.scalars(select(Schedule))} == {"daily", "weekly"}

    # An empty list deletes them all.
    put(api, "greet", {"steps": [step("one", "return 2")], "schedules": []})
    assert db.session.scalar(select(func.count()).select_from(Schedule)) == 0


def test_export_includes_the_current_schedules(runner, api):
    put(api, "greet", {"steps": [step()], "schedules": [daily(missed="skip")]})
    result = runner.invoke(args=["workflows", "export", "greet"])
    assert result.exit_code == 0, result.output
    assert '"missed": "skip"' in result.output and '"cron": "0 9 * * *"' in result.output


# -------------------------------------------------------------------------------- firing


SCHEMA = {"type": "object", "properties": {"date": {"type": "string"}}, "required": ["date"]}


def make(define: Any, cron: str = "0 * * * *", tz: str = "UTC", **fields: Any) -> Schedule:
    define(
        "report",
        [("one", "def run(ctx):\n    return ctx.input")],
        input_schema=fields.pop("input_schema", None),
        schedules=[{"name": "hourly", "cron": cron, "timezone": tz, **fields}],
    )
    return db.session.scalar(select(Schedule).filter_by(name="hourly"))


def fire_now(schedule_id: int, when: datetime, **kw: Any) -> ScheduleFire | None:
    return scheduling.fire(schedule_id, when, registry.evaluate_input, **kw)


def test_a_fire_starts_one_run_of_the_latest_version_with_the_snippets_input(define, work):
    snippet = "def input(now):\n    return {'date': now.date().isoformat(), 'hour': now.hour}\n"
    schedule = make(define, "0 23 * * *", "UTC", input=snippet)
    # Seoul is 9 hours ahead: the snippet sees the fire time in the schedule's timezone.
    define(
        "report",
        [("one", "def run(ctx):\n    return {'v2': ctx.input}")],
        schedules=[
            {"name": "hourly", "cron": "0 8 * * *", "timezone": "Asia/Seoul", "input": snippet}
        ],
    )
    fire = fire_now(schedule.id, utc(2026, 1, 1, 23))
    assert fire is not None and fire.status == "started"
    work()
    run = db.session.get(Run, fire.run_id)
    assert run.trigger == "schedule:hourly" and run.version.label == "v2"
    assert run.input == {"date": "2026-01-02", "hour": 8}
    assert run.status == "completed" and run.output == {"v2": run.input}
    # Again, or a time that is not a fire time of the schedule: nothing more.
    assert fire_now(schedule.id, utc(2026, 1, 1, 23)).run_id == run.id
    assert fire_now(schedule.id, utc(2026, 1, 1, 22)) is None
    assert db.session.scalar(select(func.count()).select_from(Run)) == 1


def test_failing_snippet_and_bad_input_are_failed_fires(define, client):
    snippet = "def input(now):\n    raise RuntimeError('no data for ' + now.strftime('%H:%M'))\n"
    schedule = make(define, input=snippet)
    failed = fire_now(schedule.id, utc(2026, 1, 1, 5))
    assert failed.status == "failed" and failed.run_id is None
    assert "RuntimeError: no data for 05:00" in failed.error
    assert 'File "<schedule hourly>", line 2, in input' in failed.error

    define(
        "report",
        [("one", "def run(ctx):\n    return 1")],
        schedules=[{"name": "hourly", "cron": "0 * * * *", "input": {"day": 1}}],
    )
    # A later version's stricter schema, published without the schedules: a save cannot see
    # that the schedule's input no longer fits, so the fire records it.
    define("report", [("one", "def run(ctx):\n    return 2")], input_schema=SCHEMA)
    invalid = fire_now(schedule.id, utc(2026, 1, 1, 6))
    assert invalid.status == "failed"
    assert "/: 'date' is a required property" in invalid.error
    assert db.session.scalar(select(func.count()).select_from(Run)) == 0

    create_user("viewer@example.com", "viewer", "s3cret-pass")
    log_in(client, "viewer@example.com", "s3cret-pass")
    page = client.get("/workflows/report/schedules").get_data(as_text=True)
    assert "Missed and failed fires" in page
    assert (
        "RuntimeError: no data for 05:00" in page
        and "&#39;date&#39; is a required property" in page
    )


def test_a_snippet_executes_in_the_step_sandbox(define, app):
    """An input(now) snippet is an editor's code like a step's: it sees none of the console's
    settings and, when the worker runs as root, runs as STEP_USER."""
    import os
    import pwd

    snippet = (
        "import os\n"
        "def input(now):\n"
        "    raise RuntimeError(f'key={os.environ.get(\"SECRET_KEY\")} uid={os.getuid()}')\n"
    )
    schedule = make(define, input=snippet)
    failed = fire_now(schedule.id, utc(2026, 1, 1, 5))
    assert failed.status == "failed"
    assert "key=None" in failed.error and app.config["SECRET_KEY"] not in failed.error
    if os.getuid() == 0:
        assert f"uid={pwd.getpwnam('nobody').pw_uid}" in failed.error
    assert 'File "<schedule hourly>", line 3, in input' in failed.error


def test_a_snippet_that_hangs_is_a_failed_fire(define, monkeypatch):
    monkeypatch.setattr(registry, "INPUT_TIMEOUT", 0.3)
    schedule = make(define, input="def input(now):\n    while True:\n        pass\n")
    failed = fire_now(schedule.id, utc(2026, 1, 1, 5))
    assert failed.status == "failed"
    assert failed.error == "TimeoutError: input(now) took longer than 0.3 s and was stopped"


def test_one_run_per_fire_under_concurrency(define, app):
    schedule = make(define)
    when = utc(2026, 1, 1, 7)
    results: list[Any] = []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        with get_app().app_context():
            barrier.wait()
            try:
                row = fire_now(schedule.id, when)
                results.append(row.run_id if row else None)
            except Exception as exc:  # pragma: no cover - shown in the assertion
                results.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.session.commit()  # a fresh snapshot
    run_ids = set(db.session.scalars(select(Run.id)))
    assert len(run_ids) == 1, results
    assert set(results) == run_ids, results
    assert db.session.scalar(select(func.count()).select_from(ScheduleFire)) == 1


def test_a_paused_schedule_or_unpublished_workflow_does_not_fire(define, api):
    schedule = make(define, enabled=False)
    assert fire_now(schedule.id, utc(2026, 1, 1, 7)) is None
    put(api, "draft_only", {"steps": [step()], "publish": False, "schedules": [daily()]})
    draft = db.session.scalar(select(Schedule).join(Workflow).where(Workflow.name == "draft_only"))
    assert fire_now(draft.id, utc(2026, 1, 1, 0)) is None
    assert scheduling.active_schedules(utc(2026, 1, 1)) == {}


# ----------------------------------------------------------------- registration in Redis


def registered(redis_conn: Any) -> set[str]:
    members = redis_conn.zrange("rq:scheduler:scheduled_jobs", 0, -1)
    return {m.decode() for m in members if m.decode().startswith("schedule-")}


def test_registration_follows_every_change_and_survives_flushall(define, api, redis_conn):
    now = utcnow_minute()
    schedule = make(define, "0 9 * * *", "Asia/Seoul")
    registry.reconcile(now)
    first = registry.job_id(schedule.id, scheduling.next_fire("0 9 * * *", "Asia/Seoul", now))
    assert registered(redis_conn) == {first}
    registry.reconcile(now)  # idempotent
    assert registered(redis_conn) == {first}

    # Edit the time: the old job goes (no orphan), the new one comes.
    code = "def run(ctx):\n    return ctx.input"
    body = {"steps": [step("one", code)], "schedules": [daily(name="hourly", cron="30 10 * * *")]}
    put(api, "report", body)
    registry.reconcile(now)
    second = registry.job_id(schedule.id, scheduling.next_fire("30 10 * * *", "Asia/Seoul", now))
    assert registered(redis_conn) == {second}
    assert not redis_conn.exists(f"rq:job:{first}")

    # Rename through the form's domain call keeps the row and its job id's schedule.
    scheduling.update_schedule(
        db.session.get(Schedule, schedule.id), dict(daily(name="renamed", cron="30 10 * * *"))
    )
    registry.reconcile(now)
    assert registered(redis_conn) == {second}

    scheduling.set_enabled(db.session.get(Schedule, schedule.id), False)
    registry.reconcile(now)
    assert registered(redis_conn) == set()
    scheduling.set_enabled(db.session.get(Schedule, schedule.id), True)
    registry.reconcile(now)
    assert registered(redis_conn) == {second}

    redis_conn.flushall()
    registry.reconcile(now)
    assert registered(redis_conn) == {second}

    scheduling.delete_schedule(db.session.get(Schedule, schedule.id))
    registry.reconcile(now)
    assert registered(redis_conn) == set()
    assert not [k for k in redis_conn.keys("rq:job:schedule-*")]


def utcnow_minute() -> datetime:
    from console.timeutil import utcnow

    return utcnow().replace(second=0, microsecond=0)


# ------------------------------------------------------------------------- missed fires


def outage(define: Any, missed: str) -> tuple[Schedule, datetime]:
    """An hourly schedule registered at 00:30, then no scheduler until 05:30."""
    schedule = make(define, "0 * * * *", "UTC", missed=missed)
    registry.reconcile(utc(2026, 1, 1, 0, 30))
    return schedule, utc(2026, 1, 1, 5, 30)


def fire_rows() -> list[tuple[datetime, str, str | None]]:
    db.session.commit()
    rows = db.session.execute(
        select(ScheduleFire.fire_at, ScheduleFire.status, ScheduleFire.run_id).order_by(
            ScheduleFire.fire_at
        )
    ).all()
    db.session.commit()
    return [(r.fire_at, r.status, r.run_id) for r in rows]


def test_missed_latest_starts_one_run_for_the_latest_missed_fire(define, work, redis_conn):
    schedule, back = outage(define, "latest")
    registry.reconcile(back)
    work()
    rows = fire_rows()
    assert [(f, s) for f, s, _ in rows] == [(utc(2026, 1, 1, 5), "missed")]
    run = db.session.get(Run, rows[0][2])
    assert run.trigger == "schedule:hourly" and run.status == "completed"
    note = db.session.scalar(select(ScheduleFire.note))
    assert "4 earlier missed fire(s) since 2026-01-01 01:00 UTC were not started" in note
    # The stale registration (01:00) is gone; the next fire (06:00) is registered.
    assert registered(redis_conn) == {registry.job_id(schedule.id, utc(2026, 1, 1, 6))}
    registry.reconcile(back + timedelta(seconds=30))
    work()
    assert len(fire_rows()) == 1
    assert db.session.get(Schedule, schedule.id).last_fire_at == utc(2026, 1, 1, 5)


def test_missed_all_starts_one_run_per_missed_fire(define, work):
    outage(define, "all")
    registry.reconcile(utc(2026, 1, 1, 5, 30))
    work()
    registry.reconcile(utc(2026, 1, 1, 5, 31))
    work()
    rows = fire_rows()
    assert [(f.hour, s) for f, s, _ in rows] == [(h, "missed") for h in range(1, 6)]
    assert db.session.scalar(select(func.count()).select_from(Run)) == 5


def test_missed_skip_records_and_starts_nothing(define, work, app, client):
    schedule, back = outage(define, "skip")
    registry.reconcile(back)
    work()
    assert [(f, s, r) for f, s, r in fire_rows()] == [(utc(2026, 1, 1, 5), "skipped", None)]
    assert db.session.scalar(select(func.count()).select_from(Run)) == 0
    create_user("viewer@example.com", "viewer", "s3cret-pass")
    log_in(client, "viewer@example.com", "s3cret-pass")
    page = client.get("/workflows/report/schedules").get_data(as_text=True)
    assert "Not started: 5 missed fire(s) since 2026-01-01 01:00 UTC" in page


def test_fires_while_paused_are_not_missed(define, work):
    schedule = make(define, "0 * * * *", "UTC")
    registry.reconcile(utc(2026, 1, 1, 0, 30))
    scheduling.set_enabled(db.session.get(Schedule, schedule.id), False)
    registry.reconcile(utc(2026, 1, 1, 1, 30))
    scheduling.set_enabled(db.session.get(Schedule, schedule.id), True)
    registry.reconcile(utc(2026, 1, 1, 5, 30))
    work()
    assert fire_rows() == []


# ------------------------------------------------------------------------------ the page


def test_viewers_read_only(define, client):
    make(define, "0 9 * * *", "Asia/Seoul", input={"type": "full"})
    create_user("viewer@example.com", "viewer", "s3cret-pass")
    log_in(client, "viewer@example.com", "s3cret-pass")
    page = client.get("/workflows/report/schedules")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "At 09:00, Asia/Seoul" in html
    assert html.count("<time datetime=") >= 6  # next fire and the next five
    assert "Add a schedule" not in html and "Pause" not in html
    assert 'href="/workflows"' in html
    assert client.get("/workflows/report/schedules/hourly/edit").status_code == 403
    assert client.post("/workflows/report/schedules/hourly/pause").status_code in (400, 403)


def test_editors_add_edit_pause_and_delete(define, client):
    make(define, "0 9 * * *", "Asia/Seoul", input={"type": "full"})
    create_user("editor@example.com", "editor", "s3cret-pass")
    editor = client
    token = log_in(editor, "editor@example.com", "s3cret-pass")
    bad = editor.post(
        "/workflows/report/schedules",
        data={
            "csrf_token": token,
            "name": "hourly",
            "cron": "0 9 * *",
            "timezone": "Nowhere",
            "input": "{nope",
            "missed": "latest",
            "enabled": "y",
        },
    )
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert "Not JSON" in text
    bad = editor.post(
        "/workflows/report/schedules",
        data={
            "csrf_token": token,
            "name": "hourly",
            "cron": "0 9 * *",
            "timezone": "Nowhere",
            "input": "",
            "missed": "latest",
            "enabled": "y",
        },
    )
    text = bad.get_data(as_text=True)
    assert "must have 5 fields" in text and "unknown timezone &#39;Nowhere&#39;" in text
    dup = editor.post(
        "/workflows/report/schedules",
        data={
            "csrf_token": token,
            "name": "hourly",
            "cron": "0 9 * * *",
            "timezone": "UTC",
            "input": "",
            "missed": "latest",
            "enabled": "y",
        },
    )
    assert "already has a schedule named &#39;hourly&#39;" in dup.get_data(as_text=True)

    snippet = "def input(now):\n    return {'date': now.date().isoformat()}"
    added = editor.post(
        "/workflows/report/schedules",
        data={
            "csrf_token": token,
            "name": "daily_at_9am",
            "cron": "0 9 * * 1-5",
            "timezone": "Europe/Berlin",
            "input": snippet,
            "missed": "skip",
            "enabled": "y",
        },
    )
    assert added.status_code == 302
    row = db.session.scalar(select(Schedule).filter_by(name="daily_at_9am"))
    assert (row.input_code, row.missed, row.enabled) == (snippet, "skip", True)

    preview = editor.get(
        "/workflows/report/schedules/preview?cron=*/15+*+*+*+*&timezone=America/New_York",
        headers={"HX-Request": "true"},
    ).get_data(as_text=True)
    assert "Every 15 minutes, America/New_York" in preview and preview.count("<li>") == 5

    assert "0 9 * * 1-5" in editor.get("/workflows/report/schedules/daily_at_9am/edit").get_data(
        as_text=True
    )
    saved = editor.post(
        "/workflows/report/schedules/daily_at_9am/edit",
        data={
            "csrf_token": token,
            "name": "weekday_report",
            "cron": "0 9 * * 1-5",
            "timezone": "Europe/Berlin",
            "input": '{"type": "full"}',
            "missed": "latest",
        },
    )
    assert saved.status_code == 302
    db.session.expire_all()
    renamed = db.session.get(Schedule, row.id)
    assert (renamed.name, renamed.input, renamed.input_code, renamed.enabled) == (
        "weekday_report",
        {"type": "full"},
        None,
        False,
    )
    assert (
        editor.post(
            "/workflows/report/schedules/hourly/pause", data={"csrf_token": token}
        ).status_code
        == 302
    )
    db.session.expire_all()
    assert db.session.scalar(select(Schedule.enabled).filter_by(name="hourly")) is False
    html = editor.get("/workflows/report/schedules").get_data(as_text=True)
    assert html.count("paused</span>") == 2 and "Enable" in html
    editor.post("/workflows/report/schedules/hourly/delete", data={"csrf_token": token})
    assert {s.name for s in db.session.scalars(select(Schedule))} == {"weekday_report"}
    assert editor.get("/workflows/nope/schedules").status_code == 404


def test_the_schedule_form_checks_the_input_and_keeps_what_was_typed(define, client):
    make(define, input={"date": "2026-01-01"}, input_schema=SCHEMA)
    create_user("editor@example.com", "editor", "s3cret-pass")
    token = log_in(client, "editor@example.com", "s3cret-pass")
    form = {"csrf_token": token, "name": "Daily at 9am", "cron": "0 9 * *", "timezone": "UTC"}
    refused = client.post("/workflows/report/schedules", data={**form, "input": '{"day": 1}'})
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    error = re.search(r'<p class="field-error" id="input-error">([^<]*)</p>', html)
    assert error and "does not satisfy the workflow&#39;s input schema" in error[1]
    assert "&#39;date&#39; is a required property" in error[1]
    assert "{&#34;day&#34;: 1}</textarea>" in html and 'value="Daily at 9am"' in html
    assert html.count("must have 5 fields") == 1  # the preview says it; the field does not
    added = client.post(
        "/workflows/report/schedules",
        data={**form, "cron": "0 9 * * *", "input": '{"date": "2026-01-02"}'},
    )
    assert added.status_code == 302 and added.headers["Location"].endswith("#schedule-daily_at_9am")
    row = db.session.scalar(select(Schedule).filter_by(name="daily_at_9am"))
    assert row is not None and row.input == {"date": "2026-01-02"}


def test_trying_a_snippet_on_a_worker_answers_its_output_or_its_error(app):
    now = "2026-03-02T09:00:00+01:00"
    # 09:00 in Berlin is 17:00 in Seoul: the snippet sees the schedule's timezone.
    good = "def input(now):\n    return {'date': now.date().isoformat(), 'hour': now.hour}\n"
    tried = registry.try_input(good, "daily", now, "Asia/Seoul")
    assert tried == {"output": {"date": "2026-03-02", "hour": 17}}
    failed = registry.try_input("def input(now):\n    return {}['x']\n", "daily", now, "UTC")
    assert 'File "<schedule daily>", line 2, in input' in failed["error"]
    assert failed["error"].rstrip().endswith("KeyError: 'x'")
