"""The example workflows (examples/*.json), their import, and the demo job service they call.

The slow tests run each example end to end as a user would: the examples imported, a real web
server (``flask run``) serving ``/demo/jobs`` and the resume links, real ``flask worker`` and
``flask scheduler`` processes, the real Redis, on both database backends.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from rq_scheduler import Scheduler
from sqlalchemy import func, select

from console.cli import EXAMPLES_DIR, example_files, import_examples
from console.definitions import normalise
from console.extensions import db
from console.models import TERMINAL, OutboxMessage, Workflow
from tests.conftest import Processes, free_port, run_status, wait_for

EXAMPLES = {
    "approval_by_email",
    "bulk_email",
    "data_pipeline",
    "keyed_loop_with_waits",
    "poll_external_job",
    "wait_for_callback",
}
TIMEOUT = 60.0


# ------------------------------------------------------------------------------- fast


def test_every_example_is_a_valid_definition() -> None:
    files = example_files()
    assert {p.stem for p in files} == EXAMPLES
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["name"] == path.stem
        assert data["title"] and data["description"], path
        assert data["input_schema"]["type"] == "object", path
        definition = normalise(data)  # raises with every problem
        assert definition["steps"], path


def test_import_examples_into_an_empty_database_only(app, define) -> None:
    imported = import_examples()
    assert set(imported) == EXAMPLES
    names = set(db.session.scalars(select(Workflow.name)))
    assert names == EXAMPLES
    assert import_examples() == []  # no longer empty

    # A database with a workflow of its own gets none.
    db.session.execute(db.delete(Workflow))
    db.session.commit()
    define("mine", [("one", "def run(ctx):\n    return 1")])
    assert import_examples() == []
    assert list(db.session.scalars(select(Workflow.name))) == ["mine"]


def test_import_examples_validates_every_file_before_saving_any(app, tmp_path: Path) -> None:
    good = json.loads((EXAMPLES_DIR / "data_pipeline.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps(good))
    (tmp_path / "b.json").write_text(json.dumps({"name": "bad", "steps": []}))
    with pytest.raises(Exception, match="b.json"):
        import_examples(tmp_path)
    assert db.session.scalar(select(func.count()).select_from(Workflow)) == 0


def test_import_examples_command(app, runner, define) -> None:
    define("data_pipeline", [("one", "def run(ctx):\n    return 'mine'")])
    result = runner.invoke(args=["workflows", "import-examples"])
    assert result.exit_code == 0, result.output
    assert f"Imported {len(EXAMPLES) - 1} example workflows" in result.output
    assert "Skipped 1 (their name is taken" in result.output
    # The user's own data_pipeline is untouched.
    mine = db.session.scalar(select(Workflow).filter_by(name="data_pipeline"))
    assert len(mine.versions) == 1
    again = runner.invoke(args=["workflows", "import-examples"])
    assert "Imported 0 example workflows" in again.output
    replaced = runner.invoke(args=["workflows", "import-examples", "--replace"])
    assert "Imported 1 example workflows: data_pipeline" in replaced.output
    db.session.expire_all()
    assert len(db.session.scalar(select(Workflow).filter_by(name="data_pipeline")).versions) == 2


def test_demo_job_endpoints(app, client, redis_conn) -> None:
    started = client.post("/demo/jobs", json={"seconds": 0.3, "result": {"n": 1}})
    assert started.status_code == 201, started.json
    job = started.json
    assert job["status"] == "running"
    assert job["status_url"] == f"http://console.test/demo/jobs/{job['id']}"
    assert client.get(f"/demo/jobs/{job['id']}").json == {"id": job["id"], "status": "running"}
    time.sleep(0.35)
    done = client.get(f"/demo/jobs/{job['id']}").json
    assert done == {"id": job["id"], "status": "done", "result": {"n": 1}}
    assert 0 < redis_conn.ttl(f"demo:job:{job['id']}") <= 86400

    # An empty body: the defaults (3 seconds, no result).
    default = client.post("/demo/jobs")
    assert default.status_code == 201
    assert client.get(f"/demo/jobs/{default.json['id']}").json["status"] == "running"

    assert client.get("/demo/jobs/0123456789abcdef").status_code == 404
    assert client.get("/demo/jobs/not-an-id").status_code == 404
    for bad in ({"seconds": 61}, {"seconds": -1}, {"seconds": "3"}, {"seconds": True}):
        answer = client.post("/demo/jobs", json=bad)
        assert answer.status_code == 422 and "seconds" in answer.json["error"], bad
    assert client.post("/demo/jobs", data="[1]", content_type="application/json").status_code == (
        400
    )
    assert client.post("/demo/jobs", data="{", content_type="application/json").status_code == 400
    big = client.post("/demo/jobs", json={"result": "x" * 20_000})
    assert big.status_code == 413 and "limit" in big.json["error"]


def test_demo_callbacks_only_go_to_this_consoles_links(app, client, redis_conn) -> None:
    for url in (
        "http://example.com/hook",
        "http://console.test.evil.com/flow/resume/x",
        "http://console.test/api/runs",
        12,
    ):
        answer = client.post("/demo/jobs", json={"seconds": 1, "callback_url": url})
        assert answer.status_code == 422, url
        assert "callback_url" in answer.json["error"]
    scheduler = Scheduler(queue_name=app.config["RUN_QUEUE"], connection=redis_conn)
    assert list(scheduler.get_jobs()) == []
    ok = client.post(
        "/demo/jobs", json={"seconds": 5, "callback_url": "http://console.test/flow/resume/t"}
    )
    assert ok.status_code == 201
    (job,) = scheduler.get_jobs()
    assert job.func_name == "console.demo.jobs.call_back" and job.args == (ok.json["id"],)


def test_demo_endpoints_are_public_and_need_no_csrf(app) -> None:
    # A client with CSRF protection on, as in production, and no session.
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    assert client.post("/demo/jobs", json={"seconds": 0}).status_code == 201


# ------------------------------------------------------------------------------- slow


@pytest.fixture
def stack(app, api, processes: Processes, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """The examples imported, then a web server, a worker and the scheduler as processes.

    Step code reaches the demo service at ``BASE_URL`` from its environment, and links are
    built from it too: the web server's address on a free port.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes.env["BASE_URL"] = base
    monkeypatch.setenv("BASE_URL", base)
    app.config["BASE_URL"] = base
    assert set(import_examples()) == EXAMPLES
    processes.start("run", "--host", "127.0.0.1", "--port", str(port), "--no-reload", name="web")

    def up() -> bool:
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code in (200, 503)
        except requests.RequestException:
            return False

    wait_for(up, TIMEOUT, 0.2, message="the web server")
    processes.worker()
    processes.scheduler()

    def start(name: str, input: dict[str, Any]) -> str:
        started = api.post(f"/api/workflows/{name}/runs", json={"input": input})
        assert started.status_code == 202, started.json
        return str(started.json["id"])

    start.base = base  # type: ignore[attr-defined]
    return start


def until(processes: Processes, predicate: Callable[[], Any], what: str) -> Any:
    try:
        return wait_for(predicate, TIMEOUT, 0.1, message=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{processes.output()}") from None


def finished(api: Any, processes: Processes, run_id: str) -> dict[str, Any]:
    until(processes, lambda: run_status(run_id) in TERMINAL, f"run {run_id} to end")
    return api.get(f"/api/runs/{run_id}").json  # type: ignore[no-any-return]


def log_messages(api: Any, run_id: str) -> list[str]:
    body = api.get(f"/api/runs/{run_id}/logs").json
    lines = body["data"] if isinstance(body, dict) else body
    return [line["message"] for line in lines]


@pytest.mark.slow
def test_approval_by_email(stack, api, processes) -> None:
    approve = stack("approval_by_email", {"approver": "boss@example.com", "request": "Ship it"})
    reject = stack("approval_by_email", {"approver": "boss@example.com"})
    expire = stack("approval_by_email", {"approver": "boss@example.com", "timeout_seconds": 1})
    for run_id in (approve, reject):
        until(processes, lambda r=run_id: run_status(r) == "suspended", f"{run_id} to suspend")

    def email(run_id: str) -> OutboxMessage:
        db.session.expire_all()
        message = db.session.scalar(select(OutboxMessage).filter_by(run_id=run_id))
        db.session.commit()
        assert message is not None and message.status == "kept"  # no MAIL_SERVER: Outbox
        return message

    message = email(approve)
    assert message.recipients == ["boss@example.com"]
    assert message.subject == "Approval needed: Ship it"
    resume_url = re.search(r"Approve: (\S+)", message.text).group(1)
    cancel_url = re.search(r"Reject:  (\S+)", message.text).group(1)
    run = api.get(f"/api/runs/{approve}").json
    assert run["links"]["resume_url"] == resume_url and resume_url.startswith(stack.base)
    clicked = requests.post(resume_url, json={"comment": "looks good"}, timeout=10)
    assert clicked.status_code == 200
    assert clicked.json() == {"run": approve, "action": "resumed", "status": "pending"}
    run = finished(api, processes, approve)
    assert run["status"] == "completed", run
    assert run["output"] == {
        "approver": "boss@example.com",
        "request": "Ship it",
        "decision": "approved",
        "comment": "looks good",
        "summary": "Approved: Ship it (looks good)",
    }
    assert run["steps"][0]["resume_data"] == {"comment": "looks good"}

    rejected = re.search(r"Reject:  (\S+)", email(reject).text).group(1)
    assert rejected != cancel_url
    answer = requests.post(rejected, timeout=10)
    assert answer.json() == {"run": reject, "action": "canceled", "status": "canceled"}
    assert finished(api, processes, reject)["status"] == "canceled"

    run = finished(api, processes, expire)
    assert run["status"] == "completed", run
    assert run["output"]["decision"] == "expired"
    assert run["output"]["summary"].startswith("Expired without an answer: ")
    assert run["steps"][0]["timed_out"] is True


@pytest.mark.slow
def test_poll_external_job(stack, api, processes) -> None:
    done = stack(
        "poll_external_job",
        {"job_seconds": 1.5, "poll_every": 0.3, "result": {"rows": 7}},
    )
    never = stack("poll_external_job", {"job_seconds": 60, "poll_every": 0.2, "max_retries": 2})
    run = finished(api, processes, done)
    assert run["status"] == "completed", run
    job_id = run["steps"][0]["output"]["job"]
    assert run["output"]["job"] == job_id and run["output"]["result"] == {"rows": 7}
    checks = run["output"]["checks"]
    assert checks >= 2 and run["steps"][1]["runs"] == checks
    assert requests.get(f"{stack.base}/demo/jobs/{job_id}", timeout=5).json()["status"] == "done"

    run = finished(api, processes, never)
    assert run["status"] == "failed"
    assert run["steps"][1]["runs"] == 3
    assert "is still running after 3 checks" in run["steps"][1]["error"]


@pytest.mark.slow
def test_wait_for_callback(stack, api, processes) -> None:
    started = time.monotonic()
    run_id = stack(
        "wait_for_callback", {"job_seconds": 1, "timeout_seconds": 45, "result": {"paid": True}}
    )
    run = finished(api, processes, run_id)
    assert run["status"] == "completed", run
    # Woken by the demo service's POST to the resume link, not by the 45 s timeout.
    assert time.monotonic() - started < 40
    assert run["output"]["status"] == "done" and run["output"]["result"] == {"paid": True}
    first = run["steps"][0]
    assert first["runs"] == 2
    assert first["output"] == {
        "job": run["output"]["job"],
        "status": "done",
        "result": {"paid": True},
    }


@pytest.mark.slow
def test_keyed_loop_with_waits(stack, api, processes) -> None:
    run_id = stack("keyed_loop_with_waits", {"items": ["a", "b", "c"], "seconds": 0.5})
    run = finished(api, processes, run_id)
    assert run["status"] == "completed", run
    posted = run["output"]["posted"]
    assert run["output"]["count"] == 3 and [p["item"] for p in posted] == ["a", "b", "c"]
    assert len({p["job"] for p in posted}) == 3
    for p in posted:
        job = requests.get(f"{stack.base}/demo/jobs/{p['job']}", timeout=5).json()
        assert job["result"] == {"item": p["item"]}
    # Each item posted once although the step executed four times (three waits).
    assert log_messages(api, run_id).count("posted") == 3
    assert run["steps"][0]["runs"] == 1


@pytest.mark.slow
def test_bulk_email(stack, api, processes) -> None:
    to = ["a@example.com", "b@example.com", "a@example.com", "c@example.com"]
    run_id = stack("bulk_email", {"recipients": to, "subject": "Hi", "text": "Dear {email}"})
    run = finished(api, processes, run_id)
    assert run["status"] == "completed", run
    assert run["output"]["sent"] == 3
    assert [r["to"] for r in run["output"]["log"]] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]
    messages = db.session.scalars(
        select(OutboxMessage).filter_by(run_id=run_id).order_by(OutboxMessage.seq)
    ).all()
    assert [(m.recipients, m.subject, m.text, m.status) for m in messages] == [
        ([a], "Hi", f"Dear {a}", "kept")
        for a in ("a@example.com", "b@example.com", "c@example.com")
    ]


@pytest.mark.slow
def test_data_pipeline(stack, api, processes) -> None:
    first = stack("data_pipeline", {"rows": 30, "seed": 3, "regions": ["north", "south"]})
    second = stack("data_pipeline", {"rows": 30, "seed": 3, "regions": ["north", "south"]})
    run = finished(api, processes, first)
    assert run["status"] == "completed", run
    assert [s["name"] for s in run["steps"]] == ["extract", "transform", "load"]
    totals = run["steps"][1]["output"]["regions"]
    assert set(totals) <= {"north", "south"}
    assert sum(t["orders"] for t in totals.values()) == 30
    output = run["output"]
    assert output["rows"] == 30 and output["regions"] == len(totals)
    assert output["revenue"] == pytest.approx(sum(t["revenue"] for t in totals.values()))
    assert output["top_region"] == max(totals, key=lambda r: totals[r]["revenue"])
    assert {f"loaded {r}" for r in totals} <= set(log_messages(api, first))
    # Deterministic: the same input gives the same output.
    assert finished(api, processes, second)["output"] == output
