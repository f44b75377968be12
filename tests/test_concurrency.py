"""Concurrency limits (docs/operations.md#concurrency): the definition field, slots taken in the
claim, waiting runs in the API and on their card, creation order, suspended runs holding no
slot, pause and cancel freeing one; and with real worker processes, three runs on two workers
and a worker killed mid-run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from console import runs as domain
from console.extensions import db
from console.models import Run, Workflow
from tests.conftest import run_status, wait_for
from tests.support import code, step

SLOW = code("import time\ntime.sleep(ctx.input.get('sleep', 0))\nreturn ctx.input.get('n')")


def start(api: Any, workflow: str, **input: Any) -> str:
    response = api.post(f"/api/workflows/{workflow}/runs", json={"input": input})
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def fresh(stmt: Any) -> list[Any]:
    db.session.commit()
    db.session.expire_all()
    rows = list(db.session.execute(stmt).all())
    db.session.commit()
    return rows


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_concurrency_must_be_a_whole_number_of_at_least_one(app, api, value):
    body = {"name": "capped", "steps": [step()], "concurrency": value}
    answer = api.put("/api/workflows/capped", json=body)
    assert answer.status_code == 422
    assert [d["path"] for d in answer.json["details"]] == ["/concurrency"]


def test_the_limit_follows_the_latest_version(app, define, api):
    define("capped", [step()], concurrency=2)
    assert db.session.scalar(select(Workflow.concurrency)) == 2
    assert api.get("/api/workflows/capped").json["concurrency"] == 2
    define("capped", [step()], concurrency=None)
    db.session.expire_all()
    assert db.session.scalar(select(Workflow.concurrency)) is None


def test_waiting_runs_say_why_and_start_in_creation_order(app, define, api, client, auth, work):
    define("capped", [("one", SLOW)], concurrency=1)
    first, second, third = (start(api, "capped", n=n) for n in (1, 2, 3))
    # A worker holds the first run (a real claim, as a worker makes it).
    claim = domain.take_run(first, "worker-a")
    assert claim is not None
    assert domain.take_run(second, "worker-b") is None  # the only slot is taken
    assert api.get(f"/api/runs/{second}").json["waiting_for"] == "concurrency"
    assert api.get(f"/api/runs/{first}").json["waiting_for"] is None
    listed = {r["id"]: r["waiting_for"] for r in api.get("/api/runs").json["data"]}
    assert listed == {first: None, second: "concurrency", third: "concurrency"}
    auth.login("viewer")
    page = client.get("/tasks").get_data(as_text=True)
    assert page.count("waiting: 1 of 1 running") == 2

    # Canceling the running run frees its slot at once; the oldest waiting run goes next.
    assert api.post(f"/api/runs/{first}/cancel").status_code == 200
    assert domain.take_run(third, "worker-c") is None  # the second was created first
    work(until=lambda: run_status(third) == "completed")
    rows = dict(fresh(select(Run.id, Run.started_at).where(Run.id.in_((second, third)))))
    assert rows[second] < rows[third]
    assert run_status(second) == "completed"


def test_a_suspended_run_holds_no_slot(app, define, api, work):
    define(
        "approvals",
        [("ask", code("ctx.flow.suspend(timeout=600)\nreturn 1")), ("then", code("return 2"))],
        concurrency=1,
    )
    asking = start(api, "approvals")
    work(until=lambda: run_status(asking) == "suspended")
    other = start(api, "approvals")
    work(until=lambda: run_status(other) == "suspended")
    assert run_status(asking) == "suspended"


def test_a_paused_run_frees_its_slot(app, define, api, work):
    define("capped", [("one", SLOW)], concurrency=1)
    held, waiting = start(api, "capped", n=1), start(api, "capped", n=2)
    assert domain.take_run(held, "worker-a") is not None
    assert api.get(f"/api/runs/{waiting}").json["waiting_for"] == "concurrency"
    assert api.post(f"/api/runs/{held}/pause").status_code == 200
    assert api.get(f"/api/runs/{waiting}").json["waiting_for"] is None
    work(until=lambda: run_status(waiting) == "completed")
    assert run_status(held) == "paused"


def test_runs_without_a_limit_never_wait(app, define, api):
    define("free", [("one", SLOW)])
    ids = [start(api, "free") for _ in range(3)]
    assert all(domain.take_run(run_id, f"w{i}") is not None for i, run_id in enumerate(ids))


# ------------------------------------------------------------------ real worker processes


def running_now(workflow: str) -> int:
    return int(
        fresh(
            select(func.count())
            .select_from(Run)
            .join(Workflow)
            .where(Workflow.name == workflow, Run.status == "running")
        )[0][0]
    )


@pytest.mark.slow
def test_three_runs_on_two_workers_never_run_two_at_once(app, define, api, processes):
    define("capped", [("one", SLOW)], concurrency=1)
    processes.worker()
    processes.worker()
    ids = [start(api, "capped", n=n, sleep=1.0) for n in range(3)]
    samples: list[int] = []

    def done() -> bool:
        samples.append(running_now("capped"))
        return all(run_status(i) == "completed" for i in ids)

    wait_for(done, timeout=90, interval=0.05, message="three runs")
    out = processes.output()
    assert max(samples) == 1, out
    assert samples.count(1) > 10, out  # the sampling saw them run
    rows = fresh(select(Run.id, Run.started_at, Run.finished_at).where(Run.id.in_(ids)))
    order = [r.id for r in sorted(rows, key=lambda r: r.started_at)]
    assert order == ids, out
    spans = sorted((r.started_at, r.finished_at) for r in rows)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2)), (spans, out)


BLOCK_ONCE = code(
    "import os, time\n"
    "if not os.path.exists(ctx.input['marker']):\n"
    "    open(ctx.input['marker'], 'w').close()\n"
    "    time.sleep(120)\n"
    "return ctx.input['n']"
)


@pytest.mark.slow
def test_a_killed_workers_slot_frees_when_its_lease_expires(
    app, define, api, processes, tmp_path: Path
):
    define("capped", [("one", BLOCK_ONCE)], concurrency=1)
    worker = processes.worker()
    marker = tmp_path / "marker"
    first = start(api, "capped", n=1, marker=str(marker))
    second = start(api, "capped", n=2, marker=str(marker))
    wait_for(marker.exists, timeout=60, message="the first run's step to start")
    assert run_status(first) == "running"
    processes.kill_tree(worker)
    assert api.get(f"/api/runs/{second}").json["waiting_for"] == "concurrency"
    processes.worker()
    processes.scheduler()
    samples: list[int] = []

    def done() -> bool:
        samples.append(running_now("capped"))
        return run_status(first) == "completed" and run_status(second) == "completed"

    wait_for(done, timeout=90, interval=0.05, message="both runs after the kill")
    out = processes.output()
    assert max(samples) == 1, out
    rows = dict(fresh(select(Run.id, Run.replays).where(Run.id.in_((first, second)))))
    assert rows == {first: 1, second: 0}, out


# ------------------------------------------------------------------------------ the editor


def test_the_editor_sets_the_operations_fields_and_definitions_round_trip(app, api):
    from tests.test_editor import Editor, draft_of

    editor = Editor(app, "ed@example.com")
    name = editor.create("Operated")
    editor.add(name)
    form = {
        "title": "Operated",
        "description": "",
        "mode": "builder",
        "fields-0-name": "",
        "fields-0-type": "string",
        "concurrency": "2",
        "retention_days": "30",
        "notify_email": "ops@example.com, lead@example.com",
        "notify_suspended": "y",
        "revision": editor.revision(name),
    }
    saved = editor.post(f"/workflows/{name}/input", form)
    assert saved.status_code == 200, saved.get_data(as_text=True)
    draft = draft_of(name)
    assert draft is not None
    assert (draft["concurrency"], draft["retention_days"]) == (2, 30)
    assert draft["notify"] == {
        "on": ["failed", "suspended"],
        "email": ["ops@example.com", "lead@example.com"],
    }
    page = editor.page(f"/workflows/{name}")
    assert 'value="ops@example.com, lead@example.com"' in page and 'value="30"' in page

    refused = editor.post(
        f"/workflows/{name}/input", {**form, "concurrency": "0", "revision": editor.revision(name)}
    )
    assert refused.status_code == 422

    # A definition with the fields goes out and back in unchanged.
    body = {
        "name": "trip",
        "steps": [step()],
        "concurrency": 3,
        "retention_days": 7,
        "notify": {"on": ["failed"], "email": ["a@example.com"]},
        "schedules": [{"name": "s", "cron": "0 9 * * *", "overlap": "skip"}],
    }
    assert api.put("/api/workflows/trip", json=body).status_code in (200, 201)
    exported = api.get("/api/workflows/trip").json
    for key in ("concurrency", "retention_days", "notify"):
        assert exported[key] == body[key]
    assert exported["schedules"][0]["overlap"] == "skip"
    definition = {
        k: v for k, v in exported.items() if k not in ("draft", "versions", "webhook_url")
    }
    again = api.put("/api/workflows/trip", json=definition)
    assert again.status_code == 200 and again.json.get("published") is not True, again.json
