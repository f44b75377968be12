"""``GET /metrics`` (docs/operations.md#metrics), parsed with prometheus_client's own text
parser after real runs: who may scrape, and the series with their labels."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from console import runs as domain
from console.auth import create_token, create_user
from console.extensions import db
from console.models import Run
from tests.conftest import run_status
from tests.support import code


def scrape(client: Any, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get("/metrics", headers=headers)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def viewer_token() -> str:
    return create_token(create_user("viewer@example.com", "viewer", "s3cret-pass")[0])


def test_who_may_scrape(app, client, auth):
    assert scrape(client, None).status_code == 401
    assert scrape(client, "not-a-token").status_code == 401
    assert scrape(client, viewer_token()).status_code == 200
    app.config["METRICS_TOKEN"] = "prometheus-secret-1234"
    assert scrape(client, "prometheus-secret-1234").status_code == 200
    assert scrape(client, "prometheus-secret-12345").status_code == 401
    auth.login("admin")  # a session cookie is not enough: scrapers send a token
    assert client.get("/metrics").status_code == 401


def test_series_after_some_runs(app, define, work, client):
    ok = define("ok", [("a", code("return 1")), ("b", code("return 2"))])
    bad = define("bad", [("a", code("raise ValueError('no')"))])
    asking = define("asking", [("ask", code("ctx.flow.suspend(timeout=600)"))])
    for workflow in (ok, ok, bad):
        domain.start_run(workflow, {})
    waiting, _ = domain.start_run(asking, {})
    work(until=lambda: run_status(waiting.id) == "suspended")
    work(
        until=lambda: all(run_status(r.id) != "pending" for r in db.session.scalars(db.select(Run)))
    )
    domain.start_run(ok, {})  # left pending: no worker takes it
    response = scrape(client, viewer_token())
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    found = samples(response.get_data(as_text=True))

    def value(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted(labels.items())))]

    assert value("console_runs", workflow="ok", status="completed") == 2
    assert value("console_runs", workflow="ok", status="pending") == 1
    assert value("console_runs", workflow="bad", status="failed") == 1
    assert value("console_runs", workflow="asking", status="suspended") == 1
    assert value("console_runs_finished_total", workflow="ok", status="completed") == 2
    assert value("console_steps_total", workflow="ok", status="completed") == 4
    assert value("console_run_duration_seconds_count", workflow="ok") == 2
    assert value("console_run_duration_seconds_bucket", workflow="ok", le="+Inf") == 2
    assert value("console_run_duration_seconds_sum", workflow="ok") > 0
    assert value("console_step_duration_seconds_count", workflow="ok") == 4
    assert value("console_queue_depth", queue="runs") == 1
    assert value("console_oldest_pending_run_age_seconds") >= 0
    assert value("console_workers") == 0
    assert value("console_redis_up") == 1
    assert ("console_link_actions_total", (("action", "resumed"),)) in found
    assert ("console_reconciler_requeues_total", ()) in found
    assert ("console_scheduler_last_tick_timestamp_seconds", ()) in found


@pytest.mark.slow
def test_worker_and_scheduler_processes_show_up(app, client, processes):
    from tests.conftest import wait_for

    processes.worker()
    processes.scheduler()
    token = viewer_token()

    def live() -> bool:
        found = samples(scrape(client, token).get_data(as_text=True))
        tick = found[("console_scheduler_last_tick_timestamp_seconds", ())]
        return found[("console_workers", ())] >= 1 and tick > 0

    wait_for(live, timeout=60, message=processes.output())
