"""Suspend, rerun, ctx.wait and email, executed in-process (SimpleWorker + reconciler)."""

from __future__ import annotations

from sqlalchemy import func, select

from console import runs as domain
from console.extensions import db
from console.models import OutboxMessage, Waitpoint
from tests.conftest import run_status


def start(workflow, input=None):
    run, _ = domain.start_run(workflow, input or {})
    return run.id


def token_of(url):
    return url.rsplit("/", 1)[1]


APPROVAL = [
    (
        "ask",
        "def run(ctx):\n"
        "    links = ctx.flow.suspend(timeout=60)\n"
        "    ctx.send_email(to='boss@example.com', subject='Approve?',\n"
        "                   text=f'Yes: {links.resume_url}\\nNo: {links.cancel_url}')\n"
        "    return {'asked': True}",
    ),
    (
        "after",
        "def run(ctx):\n"
        "    a = ctx.steps.ask\n"
        "    return {'data': a.resume_data, 'timed_out': a.timed_out, 'out': a.output}",
    ),
]


def test_suspend_then_resume_link(app, define, work, api, client):
    wf = define("approval", APPROVAL)
    run_id = start(wf)
    work(until=lambda: run_status(run_id) == "suspended")
    run = api.get(f"/api/runs/{run_id}").json
    assert run["status"] == "suspended"
    assert [s["status"] for s in run["steps"]] == ["suspended", "pending"]
    links = run["links"]
    message = db.session.scalar(select(OutboxMessage))
    assert links["resume_url"] in message.text and message.status == "kept"
    path = links["resume_url"].replace("http://console.test", "")
    page = client.get(path)
    assert page.status_code == 200 and b"Approve" in page.data
    assert run_status(run_id) == "suspended"  # GET changes nothing
    done = client.post(path, json={"approved": True})
    assert done.status_code == 200
    assert done.json == {"run": run_id, "action": "resumed", "status": "pending"}
    again = client.post(path, json={"approved": False})
    assert again.json["action"] == "already_resumed"
    cancel = client.post(links["cancel_url"].replace("http://console.test", ""))
    assert cancel.status_code == 409 and cancel.json["outcome"] == "resumed"
    work()
    run = api.get(f"/api/runs/{run_id}").json
    assert run["status"] == "completed"
    assert run["output"] == {"data": {"approved": True}, "timed_out": False, "out": {"asked": True}}
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_suspend_cancel_link_and_timeout(app, define, work, api, client):
    wf = define("approval", APPROVAL)
    run_id = start(wf)
    work(until=lambda: run_status(run_id) == "suspended")
    links = api.get(f"/api/runs/{run_id}").json["links"]
    canceled = client.post(links["cancel_url"].replace("http://console.test", ""))
    assert canceled.json == {"run": run_id, "action": "canceled", "status": "canceled"}
    gone = client.post(links["resume_url"].replace("http://console.test", ""))
    assert gone.status_code == 409
    assert client.post("/flow/resume/not-a-real-token").status_code == 404

    wf2 = define(
        "quick", [("ask", APPROVAL[0][1].replace("timeout=60", "timeout=0.5")), APPROVAL[1]]
    )
    run2 = start(wf2)
    work(until=lambda: run_status(run2) == "completed", timeout=20)
    out = api.get(f"/api/runs/{run2}").json["output"]
    assert out["timed_out"] is True and out["data"] is None


def test_rerun_polls_until_max_retries(app, define, work, api):
    wf = define(
        "poll",
        [
            (
                "poll",
                "def run(ctx):\n"
                "    ctx.flow.rerun(0.2, {'seen': ctx.run.runs}, max_retries=2)\n"
                "    return {'runs': ctx.run.runs, 'context': ctx.run.context}",
            ),
            ("next", "def run(ctx):\n    return ctx.steps.poll.output"),
        ],
    )
    run_id = start(wf)
    work(timeout=20)
    run = api.get(f"/api/runs/{run_id}").json
    assert run["status"] == "completed", run
    assert run["output"] == {"runs": 3, "context": {"seen": 2}}
    assert run["steps"][0]["runs"] == 3


def test_wait_loop_runs_each_task_once(app, define, work, api, tmp_path):
    side = tmp_path / "calls.txt"
    code = (
        "def post(i):\n"
        f"    with open({str(side)!r}, 'a') as f:\n"
        "        f.write(f'{i}\\n')\n"
        "    return i\n"
        "def run(ctx):\n"
        "    total = 0\n"
        "    for i in range(3):\n"
        "        total += ctx.task(f'post_{i}', post, i)\n"
        "        ctx.wait(f'wait_{i}', 0.2)\n"
        "    ctx.send_email(to='a@example.com', subject='done', text=str(total))\n"
        "    return {'total': total, 'runs': ctx.run.runs, 'attempt': ctx.run.attempt}"
    )
    wf = define("loop", [("loop", code)])
    run_id = start(wf)
    work(timeout=20)
    run = api.get(f"/api/runs/{run_id}").json
    assert run["status"] == "completed", run
    assert run["output"] == {"total": 3, "runs": 1, "attempt": 1}
    assert side.read_text().split() == ["0", "1", "2"]
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    assert db.session.scalar(select(func.count()).select_from(Waitpoint)) == 0


def test_links_of_an_earlier_rerun_execution_are_over(app, define, work, api, client):
    wf = define(
        "rerun_links",
        [
            (
                "poll",
                "def run(ctx):\n"
                "    if ctx.run.runs == 1:\n"
                "        links = ctx.flow.rerun(0.2, max_retries=1)\n"
                "        return {'resume': links.resume_url, 'cancel': links.cancel_url}\n"
                "    return {'done': True}",
            ),
            ("hold", "def run(ctx):\n    ctx.flow.suspend(timeout=60)\n    return 1"),
        ],
    )
    run_id = start(wf)
    rows = []

    def first_links():
        from console.models import StepRun

        db.session.expire_all()
        row = db.session.scalar(
            select(StepRun).where(StepRun.run_id == run_id, StepRun.name == "poll")
        )
        db.session.commit()
        if row is not None and isinstance(row.output, dict) and "resume" in row.output:
            rows.append(dict(row.output))
        return run_status(run_id) == "suspended"

    work(until=first_links, timeout=20)
    assert rows, "the first execution's links were recorded"
    old = rows[0]
    resume = client.post(old["resume"].replace("http://console.test", ""))
    cancel = client.post(old["cancel"].replace("http://console.test", ""))
    assert (resume.status_code, cancel.status_code) == (410, 410)
    assert run_status(run_id) == "suspended"
