"""Resume and cancel links (``ctx.flow.suspend``/``rerun``, ``ctx.wait``,
``ctx.send_email``; docs/steps.md and docs/links.md), as the people and services that use
them see them.

The first half works in-process (the test client, a SimpleWorker draining the queue); the
tests marked ``slow`` run real ``flask worker`` and ``flask scheduler`` processes and deliver
email to a real SMTP server on the loopback interface.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from rq import Queue
from sqlalchemy import select, update

from console.extensions import db
from console.models import OutboxMessage, Run, StepRun, Waitpoint
from console.queueing import get_redis
from tests.conftest import wait_for

BASE = "http://console.test"  # BASE_URL in the tests' environment
ONE_MIB = 1024 * 1024

ASK = """\
def run(ctx):
    links = ctx.flow.suspend(timeout=ctx.input.get("timeout", 60))
    ctx.send_email(to="boss@example.com", subject=f"Approve run {ctx.run.id}?",
                   text=f"Approve: {links.resume_url}\\nReject: {links.cancel_url}\\n")
    return {"asked": True}
"""

AFTER = """\
def run(ctx):
    if ctx.input.get("log"):
        with open(ctx.input["log"], "a") as f:
            f.write(ctx.run.id + "\\n")
    ask = ctx.steps["ask"]
    return {"data": ask.resume_data, "timed_out": ask.timed_out, "asked": ask.output}
"""

APPROVAL = [("ask", ASK), ("after", AFTER)]


# --------------------------------------------------------------------------------- helpers


def path_of(url: str) -> str:
    assert url.startswith(BASE + "/flow/"), url
    return url[len(BASE) :]


def query(stmt: Any) -> list[Any]:
    """Fresh rows: end our transaction so that other sessions' commits are visible."""
    db.session.commit()
    db.session.expire_all()
    rows = list(db.session.execute(stmt).all())
    db.session.commit()
    return rows


def status_of(run_id: str) -> str:
    return str(query(select(Run.status).where(Run.id == run_id))[0].status)


def start(api: Any, workflow: str, **input: Any) -> str:
    response = api.post(f"/api/workflows/{workflow}/runs", json={"input": input})
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def show(api: Any, run_id: str) -> dict[str, Any]:
    db.session.commit()  # see the worker's and the other threads' commits
    response = api.get(f"/api/runs/{run_id}")
    assert response.status_code == 200, response.json
    return dict(response.json)


def step_of(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in run["steps"] if s["name"] == name)


def waitpoint_states(run_id: str) -> list[str]:
    return [
        r.state
        for r in query(
            select(Waitpoint.state).where(Waitpoint.run_id == run_id).order_by(Waitpoint.runs)
        )
    ]


def queued_jobs(app: Flask, run_id: str) -> list[str]:
    """Ids of the jobs waiting in the run queue for this run."""
    queue = Queue(app.config["RUN_QUEUE"], connection=get_redis())
    return [job.id for job in queue.get_jobs() if job.args and job.args[0] == run_id]


def suspended_runs(api: Any, work: Any, workflow: str, count: int, **input: Any) -> list[str]:
    run_ids = [start(api, workflow, **input) for _ in range(count)]
    work(until=lambda: all(status_of(r) == "suspended" for r in run_ids))
    return run_ids


def links_of(api: Any, run_id: str) -> dict[str, str]:
    links = show(api, run_id)["links"]
    return {"resume": path_of(links["resume_url"]), "cancel": path_of(links["cancel_url"])}


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Call each function in its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = calls[i]()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    return results


def post_from_thread(app: Flask, path: str, **kwargs: Any) -> Callable[[], tuple[int, Any]]:
    """A POST made by its own client in its own app context (its own database session)."""

    def call() -> tuple[int, Any]:
        with app.app_context():
            response = app.test_client().post(path, **kwargs)
            return response.status_code, response.json

    return call


# ------------------------------------------------------------------- GET, answers, bodies


def test_get_shows_a_confirmation_page_and_changes_nothing(app, define, api, work, client):
    define("approval", APPROVAL)
    (run_id,) = suspended_runs(api, work, "approval", 1)
    links = links_of(api, run_id)

    for action, button in (("resume", b"Approve"), ("cancel", b"Reject")):
        page = client.get(links[action])
        assert page.status_code == 200
        assert page.mimetype == "text/html"
        html = page.data
        assert b'<form method="post">' in html and b"<button" in html and button in html
        assert b"approval" in html and run_id.encode() in html and b"ask" in html
    # Prefetched twice (as an email scanner would): still waiting, nothing decided.
    assert status_of(run_id) == "suspended"
    assert waitpoint_states(run_id) == ["open"]
    assert queued_jobs(app, run_id) == []

    done = client.post(links["resume"], json={"approved": True})
    assert done.status_code == 200
    assert done.json == {"run": run_id, "action": "resumed", "status": "pending"}
    # After the decision the page says so and offers no button any more.
    page = client.get(links["resume"])
    assert page.status_code == 200 and b"<button" not in page.data
    assert b"already used" in page.data


def test_put_patch_form_and_text_bodies_become_resume_data(app, define, api, work, client):
    define("approval", APPROVAL)
    by_put, by_patch, by_form, by_text, by_comment, empty = suspended_runs(api, work, "approval", 6)

    answers = {
        by_put: client.put(links_of(api, by_put)["resume"], json={"via": "put", "n": [1, 2]}),
        by_patch: client.patch(links_of(api, by_patch)["resume"], json={"via": "patch"}),
        by_form: client.post(
            links_of(api, by_form)["resume"], data={"approved": "yes", "note": "fine by me"}
        ),
        by_text: client.post(
            links_of(api, by_text)["resume"], data="looks good", content_type="text/plain"
        ),
        # The confirmation page's own form: its optional comment.
        by_comment: client.post(links_of(api, by_comment)["resume"], data={"comment": " ok "}),
        empty: client.post(links_of(api, empty)["resume"]),
    }
    for run_id, answer in answers.items():
        assert answer.status_code == 200, answer.json
        assert answer.json == {"run": run_id, "action": "resumed", "status": "pending"}

    work()
    expected = {
        by_put: {"via": "put", "n": [1, 2]},
        by_patch: {"via": "patch"},
        by_form: {"approved": "yes", "note": "fine by me"},
        by_text: "looks good",
        by_comment: {"comment": "ok"},
        empty: None,
    }
    for run_id, data in expected.items():
        run = show(api, run_id)
        assert run["status"] == "completed", run
        assert run["output"] == {"data": data, "timed_out": False, "asked": {"asked": True}}
        assert step_of(run, "ask")["resume_data"] == data


def test_cancel_link_with_put_and_patch(app, define, api, work, client, tmp_path):
    define("approval", APPROVAL)
    log = tmp_path / "after.txt"
    by_put, by_patch = suspended_runs(api, work, "approval", 2, log=str(log))
    for run_id, method in ((by_put, client.put), (by_patch, client.patch)):
        answer = method(links_of(api, run_id)["cancel"], json={"reason": "no"})
        assert answer.status_code == 200
        assert answer.json == {"run": run_id, "action": "canceled", "status": "canceled"}
    work()
    for run_id in (by_put, by_patch):
        run = show(api, run_id)
        assert run["status"] == "canceled"
        assert [s["status"] for s in run["steps"]] == ["canceled", "pending"]
        assert queued_jobs(app, run_id) == []
    assert not log.exists()  # no step executed after the cancel


def test_html_answers_when_the_client_asks_for_html(app, define, api, work, client):
    define("approval", APPROVAL)
    first, second = suspended_runs(api, work, "approval", 2)
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    links = links_of(api, first)

    done = client.post(links["resume"], data={"comment": "yes"}, headers=html)
    assert done.status_code == 200 and done.mimetype == "text/html"
    assert b"Approved" in done.data and b"resumed" in done.data
    again = client.post(links["resume"], headers=html)
    assert again.status_code == 200 and again.mimetype == "text/html"
    assert b"already done; nothing changed" in again.data
    other = client.post(links["cancel"], headers=html)
    assert other.status_code == 409 and other.mimetype == "text/html"
    assert b"Already decided" in other.data
    unknown = client.post("/flow/resume/no-such-token", headers=html)
    assert unknown.status_code == 404 and unknown.mimetype == "text/html"
    assert b"Link not valid" in unknown.data

    rejected = client.post(links_of(api, second)["cancel"], headers=html)
    assert rejected.status_code == 200 and rejected.mimetype == "text/html"
    assert b"Rejected" in rejected.data and b"canceled" in rejected.data
    # A JSON client still gets JSON.
    assert client.post(links["resume"]).json["action"] == "already_resumed"


def test_a_body_over_the_payload_limit_is_refused_and_changes_nothing(
    app, define, api, work, client
):
    assert app.config["MAX_PAYLOAD_BYTES"] == ONE_MIB
    define("approval", APPROVAL)
    (run_id,) = suspended_runs(api, work, "approval", 1)
    links = links_of(api, run_id)
    big = '{"blob": "' + "x" * ONE_MIB + '"}'

    for method, path in (
        ("POST", links["resume"]),
        ("PUT", links["resume"]),
        ("POST", links["cancel"]),
    ):
        answer = client.open(path, method=method, data=big, content_type="application/json")
        assert answer.status_code == 413, answer.data[:200]
        assert answer.json["error"] == "The request body is too large"
    text = client.post(links["resume"], data="y" * (ONE_MIB + 1), content_type="text/plain")
    assert text.status_code == 413
    assert status_of(run_id) == "suspended"
    assert waitpoint_states(run_id) == ["open"]
    assert queued_jobs(app, run_id) == []

    # The link still works with a body of a sensible size.
    done = client.post(links["resume"], json={"ok": True})
    assert done.status_code == 200 and done.json["action"] == "resumed"
    work()
    assert show(api, run_id)["output"]["data"] == {"ok": True}


# ---------------------------------------------------------------------- first one wins


def test_fifty_concurrent_posts_resume_the_run_once(app, define, api, work):
    define("approval", APPROVAL)
    (run_id,) = suspended_runs(api, work, "approval", 1)
    resume = links_of(api, run_id)["resume"]
    assert queued_jobs(app, run_id) == []

    answers = all_at_once([post_from_thread(app, resume, json={"n": i}) for i in range(50)])

    assert [code for code, _ in answers] == [200] * 50, answers
    actions = Counter(body["action"] for _, body in answers)
    assert actions == {"resumed": 1, "already_resumed": 49}, actions
    assert all(body["run"] == run_id for _, body in answers)
    winner = next(i for i, (_, body) in enumerate(answers) if body["action"] == "resumed")
    # Exactly one job was enqueued, and it is the one recorded on the run.
    jobs = queued_jobs(app, run_id)
    assert len(jobs) == 1, jobs
    assert query(select(Run.job_id).where(Run.id == run_id)) == [(jobs[0],)]

    work()
    run = show(api, run_id)
    assert run["status"] == "completed"
    assert run["output"]["data"] == {"n": winner}  # the first request's body, no other
    assert step_of(run, "after")["runs"] == 1


def test_resume_and_cancel_at_the_same_moment_have_one_winner(app, define, api, work, tmp_path):
    log = tmp_path / "after.txt"
    define("approval", APPROVAL)
    run_ids = suspended_runs(api, work, "approval", 10, log=str(log))

    winners = {}
    for run_id in run_ids:
        links = links_of(api, run_id)
        (r_code, r_body), (c_code, c_body) = all_at_once(
            [
                post_from_thread(app, links["resume"], json={"run": run_id}),
                post_from_thread(app, links["cancel"]),
            ]
        )
        assert sorted([r_code, c_code]) == [200, 409], (r_body, c_body)
        if r_code == 200:
            winners[run_id] = "resumed"
            assert r_body["action"] == "resumed" and c_body["outcome"] == "resumed"
            assert r_body["status"] == "pending"
            assert len(queued_jobs(app, run_id)) == 1
        else:
            winners[run_id] = "canceled"
            assert c_body == {"run": run_id, "action": "canceled", "status": "canceled"}
            assert r_body["outcome"] == "canceled"
            assert status_of(run_id) == "canceled"
            assert queued_jobs(app, run_id) == []  # nothing is enqueued after a cancel

    work()
    for run_id, outcome in winners.items():
        run = show(api, run_id)
        if outcome == "resumed":
            assert run["status"] == "completed", run
            assert run["output"]["data"] == {"run": run_id}
        else:
            assert run["status"] == "canceled", run
            assert step_of(run, "after")["status"] == "pending"  # never executed
    executed = log.read_text().split() if log.exists() else []
    assert sorted(executed) == sorted(r for r, o in winners.items() if o == "resumed")


# ------------------------------------------------------------------- tokens and expiry


def test_tampered_tokens_are_unknown_and_tokens_are_bound(app, define, api, work, client):
    define("approval", APPROVAL)
    run_a, run_b = suspended_runs(api, work, "approval", 2)
    links_a, links_b = links_of(api, run_a), links_of(api, run_b)

    token = links_a["resume"].rsplit("/", 1)[1]
    middle = len(token) // 2
    for altered in (
        token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :],
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        token + "x",
        token[:-1],
    ):
        for method in ("GET", "POST", "PUT", "PATCH"):
            answer = client.open(f"/flow/resume/{altered}", method=method, json={"x": 1})
            assert answer.status_code == 404, (altered, method)
            assert answer.json["details"] == []
    # A token is bound to its action: the resume token is no cancel token and vice versa.
    assert client.post(f"/flow/cancel/{token}").status_code == 404
    cancel_token = links_a["cancel"].rsplit("/", 1)[1]
    assert client.post(f"/flow/resume/{cancel_token}").status_code == 404
    assert client.post(f"/flow/approve/{token}").status_code == 404
    assert status_of(run_a) == "suspended" and waitpoint_states(run_a) == ["open"]

    # Run B's token decides run B only.
    answer = client.post(links_b["resume"], json={"for": "b"})
    assert answer.json == {"run": run_b, "action": "resumed", "status": "pending"}
    assert status_of(run_a) == "suspended" and waitpoint_states(run_a) == ["open"]
    assert queued_jobs(app, run_a) == []
    assert client.post(links_b["cancel"]).status_code == 409  # B's other link: decided
    assert status_of(run_a) == "suspended"

    work(until=lambda: status_of(run_b) == "completed")
    assert status_of(run_a) == "suspended"
    assert show(api, run_b)["output"]["data"] == {"for": "b"}
    assert links_of(api, run_a) == links_a  # A still waits on its own links


def test_an_expired_wait_answers_410_and_then_times_out(app, define, api, work, client):
    define("approval", APPROVAL)
    # Two seconds: with one, a loaded machine could reach the end of the wait before the
    # drain saw the run suspended (starting the step process takes a moment).
    (run_id,) = suspended_runs(api, work, "approval", 1, timeout=2)
    links = links_of(api, run_id)
    time.sleep(2.2)  # the wait is over; no reconciler has looked at it yet

    for path in (links["resume"], links["cancel"]):
        gone = client.post(path, json={"late": True})
        assert gone.status_code == 410, gone.json
        assert gone.json["run"] == run_id and "over" in gone.json["error"]
        assert gone.json["outcome"] == "timed_out"  # as it will be recorded
    assert status_of(run_id) == "suspended" and queued_jobs(app, run_id) == []
    assert waitpoint_states(run_id) == ["open"]

    work()
    run = show(api, run_id)
    assert run["status"] == "completed"
    assert run["output"]["data"] is None and run["output"]["timed_out"] is True
    for path in (links["resume"], links["cancel"]):
        gone = client.post(path, json={"late": True})
        assert gone.status_code == 410 and gone.json["outcome"] == "timed_out"
    assert show(api, run_id)["output"]["data"] is None


def test_links_of_finished_runs_answer_410(app, define, api, work, client):
    define("approval", APPROVAL)
    # Exits after handing out links: the run ends at once and its links are void.
    define(
        "exits",
        [
            (
                "ask",
                "def run(ctx):\n"
                "    links = ctx.flow.suspend(timeout=60)\n"
                "    ctx.send_email(to='a@example.com', subject='x',\n"
                "                   text=links.resume_url + ' ' + links.cancel_url)\n"
                "    ctx.flow.exit('changed my mind')\n",
            ),
            ("after", AFTER),
        ],
    )
    (canceled,) = suspended_runs(api, work, "approval", 1)
    canceled_links = links_of(api, canceled)
    assert api.post(f"/api/runs/{canceled}/cancel").json["status"] == "canceled"

    exited = start(api, "exits")
    work()
    assert status_of(exited) == "completed"
    text = query(select(OutboxMessage.text).where(OutboxMessage.run_id == exited))[0].text
    exited_resume, exited_cancel = (path_of(url) for url in text.split())

    for run_id, path in (
        (canceled, canceled_links["resume"]),
        (canceled, canceled_links["cancel"]),
        (exited, exited_resume),
        (exited, exited_cancel),
    ):
        before = show(api, run_id)
        gone = client.post(path, json={"late": True})
        assert gone.status_code == 410, (path, gone.json)
        assert gone.json["run"] == run_id
        assert show(api, run_id) == before


SHOWS_LINKS = """\
def run(ctx):
    links = ctx.flow.suspend(timeout=3600)
    ctx.logger.info(f"approve at {links.resume_url}", cancel_url=links.cancel_url)
    return {"resume": links.resume_url, "cancel": links.cancel_url}
"""


def test_only_operators_and_up_see_links(app, define, make_api, work):
    """A link acts without a login: a viewer sees no links, in the API, on the run page and
    the Tasks page, nor in a step's output, log lines or error (they are masked there)."""
    from console.auth import create_user
    from tests.support import log_in

    define(
        "leaky",
        [
            ("ask", SHOWS_LINKS),
            (
                "boom",
                "def run(ctx):\n    raise RuntimeError('old: ' + ctx.steps.ask.output['cancel'])\n",
            ),
        ],
    )
    define("hook", [{"name": "wait", "kind": "callback", "config": {"timeout": "1h"}}])
    viewer, operator = make_api("viewer"), make_api("operator")
    waiting = start(operator, "leaky")
    called = start(operator, "hook")
    work(until=lambda: status_of(waiting) == status_of(called) == "suspended")
    links = show(operator, waiting)["links"]
    tokens = [links["resume_url"].rsplit("/", 1)[1], links["cancel_url"].rsplit("/", 1)[1]]
    hook_links = show(operator, called)["links"]
    tokens += [
        hook_links["resume_url"].rsplit("/", 1)[1],
        hook_links["cancel_url"].rsplit("/", 1)[1],
    ]
    masked = [f"{BASE}/flow/resume/[hidden]", f"{BASE}/flow/cancel/[hidden]"]

    def answers(api: Any) -> str:
        return "".join(
            api.get(path).get_data(as_text=True)
            for run_id in (waiting, called)
            for path in (f"/api/runs/{run_id}", f"/api/runs/{run_id}/logs")
        )

    seen = answers(operator)  # operators see every link, in the output and the logs too
    assert all(seen.count(token) >= 2 for token in tokens), seen
    for run_id in (waiting, called):
        as_viewer = show(viewer, run_id)
        assert "links" not in as_viewer
    seen = answers(viewer)
    assert not any(token in seen for token in tokens), seen
    assert all(text in seen for text in masked)
    assert show(viewer, waiting)["steps"][0]["output"] == {"resume": masked[0], "cancel": masked[1]}
    logs = viewer.get(f"/api/runs/{called}/logs").json["data"]
    assert logs[0]["fields"] == {"resume_url": masked[0], "cancel_url": masked[1]}

    pages = {}
    for role in ("viewer", "operator"):
        client = app.test_client()
        create_user(f"page-{role}@example.com", role, "s3cret-pass")
        log_in(client, f"page-{role}@example.com", "s3cret-pass")
        pages[role] = client
    for run_id in (waiting, called):
        page = pages["viewer"].get(f"/runs/{run_id}").get_data(as_text=True)
        assert not any(token in page for token in tokens) and "/flow/resume/[hidden]" in page
        page = pages["operator"].get(f"/runs/{run_id}").get_data(as_text=True)
        assert any(token in page for token in tokens)

    # The link's run goes on and fails with a link in its error: masked on the viewer's cards.
    assert app.test_client().post(path_of(links["resume_url"]), json={}).status_code == 200
    work(until=lambda: status_of(waiting) == "failed")
    for path in ("/tasks", f"/runs/{waiting}"):
        page = pages["viewer"].get(path).get_data(as_text=True)
        assert f"old: {masked[1]}" in page and tokens[1] not in page
        assert tokens[1] in pages["operator"].get(path).get_data(as_text=True)
    assert tokens[1] not in viewer.get(f"/api/runs/{waiting}").get_data(as_text=True)


# ------------------------------------------------------------------------------- pause


def test_a_link_used_while_paused_acts_on_resume(app, define, api, work, client):
    define("approval", APPROVAL)
    clicked, untouched = suspended_runs(api, work, "approval", 2)
    links = links_of(api, clicked)
    for run_id in (clicked, untouched):
        assert api.post(f"/api/runs/{run_id}/pause").json["status"] == "paused"
    # The links are still shown while paused.
    assert links_of(api, clicked) == links

    answer = client.post(links["resume"], json={"approved": "while paused"})
    assert answer.status_code == 200
    assert answer.json == {"run": clicked, "action": "resumed", "status": "paused"}
    assert client.post(links["resume"]).json["action"] == "already_resumed"
    assert client.post(links["cancel"]).status_code == 409
    work(until=lambda: True)  # whatever is on the queue; a paused run must not move
    assert status_of(clicked) == "paused" and queued_jobs(app, clicked) == []
    assert step_of(show(api, clicked), "after")["status"] == "pending"

    resumed = api.post(f"/api/runs/{clicked}/resume").json
    assert resumed["status"] == "pending"
    # Without a decision the run goes back to waiting on its links.
    assert api.post(f"/api/runs/{untouched}/resume").json["status"] == "suspended"
    work(until=lambda: status_of(clicked) == "completed")
    run = show(api, clicked)
    assert run["output"]["data"] == {"approved": "while paused"}
    assert status_of(untouched) == "suspended"
    assert client.post(links_of(api, untouched)["resume"]).json["action"] == "resumed"
    work()
    assert status_of(untouched) == "completed"


# ------------------------------------------------------------------------------- rerun

POLL = """\
def run(ctx):
    links = ctx.flow.rerun(ctx.input.get("delay", 0.1), {"seen": ctx.run.runs},
                           max_retries=ctx.input.get("max_retries", 2))
    if ctx.run.runs == 1 and ctx.input.get("url_file"):
        with open(ctx.input["url_file"], "w") as f:
            f.write(links.resume_url)
    if ctx.run.runs == ctx.input.get("fail_at"):
        raise RuntimeError(f"gave up at run {ctx.run.runs}")
    return {"runs": ctx.run.runs, "context": ctx.run.context,
            "callback": ctx.run.callback_request, "key": ctx.idempotency_key}
"""

NEXT = """\
def run(ctx):
    return {"previous": ctx.steps.poll.output}
"""


def test_rerun_proceeds_with_the_last_output_after_max_retries(app, define, api, work):
    define("poll", [("poll", POLL), ("next", NEXT)])
    run_id = start(api, "poll", max_retries=2)
    work(timeout=20)
    run = show(api, run_id)
    assert run["status"] == "completed", run
    last = {"runs": 3, "context": {"seen": 2}, "callback": None, "key": f"{run_id}:poll:3"}
    assert run["output"] == {"previous": last}
    poll = step_of(run, "poll")
    assert poll["status"] == "completed" and poll["runs"] == 3 and poll["output"] == last
    # Each execution handed out links; the waits are all over now.
    assert set(waitpoint_states(run_id)) == {"closed"}


def test_a_step_raising_on_its_last_rerun_fails_the_run(app, define, api, work):
    define("poll", [("poll", POLL), ("next", NEXT)])
    run_id = start(api, "poll", max_retries=2, fail_at=3)
    work(timeout=20)
    run = show(api, run_id)
    assert run["status"] == "failed", run
    assert "RuntimeError: gave up at run 3" in run["error"]
    poll = step_of(run, "poll")
    assert poll["status"] == "failed" and poll["runs"] == 3
    assert "RuntimeError: gave up at run 3" in poll["error"]
    assert step_of(run, "next")["status"] == "pending"  # never reached


def test_a_callback_during_the_rerun_delay_reruns_the_step_at_once(
    app, define, api, work, client, tmp_path
):
    url_file = tmp_path / "url.txt"
    define("poll", [("poll", POLL), ("next", NEXT)])
    run_id = start(api, "poll", delay=30, max_retries=1, url_file=str(url_file))
    work(until=lambda: status_of(run_id) == "sleeping")
    assert step_of(show(api, run_id), "poll")["status"] == "sleeping"
    resume = path_of(url_file.read_text())

    began = time.monotonic()
    answer = client.post(
        resume + "?job=42&state=done",
        json={"result": "ready", "items": [1, 2]},
        headers={
            "Cookie": "session=secret-cookie",
            "Authorization": "Bearer secret-token",
            "X-Signature": "sig-123",
        },
    )
    assert answer.status_code == 200, answer.json
    assert answer.json == {"run": run_id, "action": "resumed", "status": "sleeping"}
    assert len(queued_jobs(app, run_id)) == 1  # due now, not in 30 s
    assert client.post(resume, json={"again": 1}).json["action"] == "already_resumed"

    work(timeout=20)
    assert time.monotonic() - began < 20
    run = show(api, run_id)
    assert run["status"] == "completed", run
    output = run["output"]["previous"]
    assert output["runs"] == 2 and output["context"] == {"seen": 1}
    callback = output["callback"]
    assert set(callback) == {"method", "headers", "query", "json", "body"}
    assert callback["method"] == "POST"
    assert callback["json"] == {"result": "ready", "items": [1, 2]}
    assert callback["query"] == {"job": "42", "state": "done"}
    headers = {k.lower(): v for k, v in callback["headers"].items()}
    assert headers["x-signature"] == "sig-123"
    assert headers["content-type"] == "application/json"
    assert "cookie" not in headers and "authorization" not in headers
    assert "secret" not in str(callback)
    assert step_of(run, "poll")["runs"] == 2


POLL_UNTIL_READY = """\
def run(ctx):
    if ctx.run.runs == 1:
        links = ctx.flow.rerun(ctx.input.get("delay", 0.1), {"n": 1})
        with open(ctx.input["url_file"], "w") as f:
            f.write(links.resume_url)
        return {"polling": True}
    ctx.wait("settle", 0.2)  # the same execution continues after the wait
    return {"runs": ctx.run.runs, "callback": ctx.run.callback_request}
"""


def test_a_rerun_link_is_over_once_the_step_has_moved_on(app, define, api, work, client, tmp_path):
    url_file = tmp_path / "url.txt"
    define("poll", [("poll", POLL_UNTIL_READY), ("ask", ASK), ("after", AFTER)])
    run_id = start(api, "poll", url_file=str(url_file))
    work(until=lambda: status_of(run_id) == "suspended")  # the poll is done: on to "ask"
    assert step_of(show(api, run_id), "poll")["output"] == {"runs": 2, "callback": None}
    before = show(api, run_id)

    late = client.post(path_of(url_file.read_text()), json={"late": True})
    assert late.status_code == 410, late.json
    assert late.json["run"] == run_id
    assert show(api, run_id) == before and queued_jobs(app, run_id) == []


def test_the_callback_request_survives_a_wait_in_the_rerun_step(
    app, define, api, work, client, tmp_path
):
    url_file = tmp_path / "url.txt"
    define("poll", [("poll", POLL_UNTIL_READY)])
    run_id = start(api, "poll", url_file=str(url_file), delay=30)
    work(until=lambda: status_of(run_id) == "sleeping")
    answer = client.patch(path_of(url_file.read_text()), json={"ready": True})
    assert answer.status_code == 200 and answer.json["action"] == "resumed"

    work(timeout=15)
    run = show(api, run_id)
    assert run["status"] == "completed", run
    assert run["output"]["runs"] == 2
    callback = run["output"]["callback"]
    assert callback["method"] == "PATCH" and callback["json"] == {"ready": True}


# ----------------------------------------------------- real processes and a real SMTP server


class Inbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def received(self, subject: str | None = None) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if subject is None or m["Subject"] == subject]

    @staticmethod
    def text(message: EmailMessage) -> str:
        body = message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())

    def links(self, subject: str) -> dict[str, str]:
        (message,) = wait_for(lambda: self.received(subject), timeout=60, message=subject)
        found = {}
        for line in self.text(message).splitlines():
            label, _, url = line.partition(": ")
            if label in ("Approve", "Reject"):
                found["resume" if label == "Approve" else "cancel"] = path_of(url.strip())
        assert set(found) == {"resume", "cancel"}, self.text(message)
        return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


@pytest.fixture
def mailing(app, processes, smtp, monkeypatch) -> Inbox:
    """Worker and scheduler processes (started by the test) that deliver to ``smtp``."""
    inbox, port = smtp
    settings = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(port)}
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    # The processes fixture captured the environment already; the app exists already.
    processes.env.update(settings)
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port)
    return inbox


def waiter(processes: Any) -> Callable[..., Any]:
    def wait(predicate: Callable[[], Any], message: str, timeout: float = 60.0) -> Any:
        try:
            return wait_for(predicate, timeout=timeout, interval=0.05, message=message)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{processes.output()}") from None

    return wait


def outbox(run_id: str) -> list[Any]:
    return query(
        select(OutboxMessage.subject, OutboxMessage.status, OutboxMessage.error)
        .where(OutboxMessage.run_id == run_id)
        .order_by(OutboxMessage.id)
    )


@pytest.mark.slow
def test_approval_by_email_through_real_smtp_and_processes(
    app, define, api, client, processes, mailing, tmp_path
):
    wait = waiter(processes)
    log = tmp_path / "after.txt"
    define("approval", APPROVAL)
    processes.worker()
    processes.scheduler()
    run_id = start(api, "approval", log=str(log))

    links = mailing.links(f"Approve run {run_id}?")
    wait(lambda: status_of(run_id) == "suspended", "the run to suspend")
    (message,) = mailing.received(f"Approve run {run_id}?")
    assert message["To"] == "boss@example.com"
    assert show(api, run_id)["links"]["resume_url"] == BASE + links["resume"]

    page = client.get(links["resume"])  # the approver clicks the link in the email
    assert page.status_code == 200 and b"<button" in page.data and b"Approve" in page.data
    time.sleep(1.5)  # more than a scheduler tick: still nothing happens
    assert status_of(run_id) == "suspended" and not log.exists()

    done = client.post(links["resume"], json={"approved": True})  # … and presses the button
    assert done.status_code == 200
    assert done.json["run"] == run_id and done.json["action"] == "resumed"
    assert done.json["status"] in ("pending", "running", "completed")
    wait(lambda: status_of(run_id) == "completed", "the run to complete")

    run = show(api, run_id)
    assert run["output"] == {
        "data": {"approved": True},
        "timed_out": False,
        "asked": {"asked": True},
    }
    assert step_of(run, "ask")["resume_data"] == {"approved": True}
    assert log.read_text().split() == [run_id]  # the next step ran once
    assert [(m.subject, m.status, m.error) for m in outbox(run_id)] == [
        (f"Approve run {run_id}?", "sent", None)
    ]
    assert len(mailing.received()) == 1
    again = client.post(links["resume"], json={"approved": False})
    assert again.status_code == 200 and again.json["action"] == "already_resumed"
    assert client.post(links["cancel"]).status_code == 409
    assert show(api, run_id)["output"]["data"] == {"approved": True}


@pytest.mark.slow
def test_rejection_by_email_cancels_the_run(app, define, api, client, processes, mailing, tmp_path):
    wait = waiter(processes)
    log = tmp_path / "after.txt"
    define("approval", APPROVAL)
    processes.worker()
    processes.scheduler()
    run_id = start(api, "approval", log=str(log))

    links = mailing.links(f"Approve run {run_id}?")
    wait(lambda: status_of(run_id) == "suspended", "the run to suspend")
    assert client.get(links["cancel"]).status_code == 200
    assert status_of(run_id) == "suspended"

    rejected = client.post(links["cancel"])
    assert rejected.status_code == 200
    assert rejected.json == {"run": run_id, "action": "canceled", "status": "canceled"}
    time.sleep(2.5)  # a few scheduler ticks: nothing wakes a canceled run
    run = show(api, run_id)
    assert run["status"] == "canceled"
    assert [s["status"] for s in run["steps"]] == ["canceled", "pending"]
    assert not log.exists()
    assert queued_jobs(app, run_id) == []
    assert client.post(links["resume"]).status_code == 409
    assert client.post(links["cancel"]).json["action"] == "already_canceled"
    assert [(m.status, m.error) for m in outbox(run_id)] == [("sent", None)]


@pytest.mark.slow
def test_an_unanswered_approval_times_out_and_resumes_by_itself(
    app, define, api, client, processes, mailing, tmp_path
):
    wait = waiter(processes)
    log = tmp_path / "after.txt"
    define("approval", APPROVAL)
    processes.worker()
    processes.scheduler()
    run_id = start(api, "approval", log=str(log), timeout=2)

    links = mailing.links(f"Approve run {run_id}?")
    wait(lambda: status_of(run_id) in ("suspended", "completed"), "the run to suspend")
    wait(lambda: status_of(run_id) == "completed", "the run to time out and complete")

    run = show(api, run_id)
    assert run["output"] == {"data": None, "timed_out": True, "asked": {"asked": True}}
    ask = step_of(run, "ask")
    assert ask["timed_out"] is True and ask["resume_data"] is None
    assert log.read_text().split() == [run_id]
    for path in links.values():  # too late now
        assert client.post(path, json={"approved": True}).status_code == 410
    assert show(api, run_id)["output"]["data"] is None
    assert [(m.status, m.error) for m in outbox(run_id)] == [("sent", None)]


BLOCKING_ASK = """\
import os, time

def run(ctx):
    links = ctx.flow.suspend(timeout=60)
    with open(ctx.input["url_file"] + ".tmp", "w") as f:
        f.write(links.resume_url + "\\n" + links.cancel_url)
    os.rename(ctx.input["url_file"] + ".tmp", ctx.input["url_file"])
    while not os.path.exists(ctx.input["release"]):
        time.sleep(0.05)
    return {"asked": True}
"""


@pytest.mark.slow
def test_a_link_used_before_the_suspending_step_ends_is_kept(
    app, define, api, client, processes, tmp_path
):
    wait = waiter(processes)
    log = tmp_path / "after.txt"
    define("early", [("ask", BLOCKING_ASK), ("after", AFTER)])
    processes.worker()
    processes.scheduler()

    outcomes = {}
    for action in ("resume", "cancel"):
        url_file, release = tmp_path / f"{action}.url", tmp_path / f"{action}.release"
        run_id = start(api, "early", url_file=str(url_file), release=str(release), log=str(log))
        wait(url_file.exists, "the step to hand out its links")
        resume_url, cancel_url = url_file.read_text().split("\n")
        path = path_of(resume_url if action == "resume" else cancel_url)
        assert status_of(run_id) == "running"  # the step is still executing

        answer = client.post(path, json={"early": action})
        assert answer.status_code == 200, answer.json
        if action == "resume":
            assert answer.json == {"run": run_id, "action": "resumed", "status": "running"}
        else:
            assert answer.json == {"run": run_id, "action": "canceled", "status": "canceled"}
        release.touch()
        outcomes[action] = run_id

    resumed, canceled = outcomes["resume"], outcomes["cancel"]
    wait(lambda: status_of(resumed) == "completed", "the early-resumed run to complete")
    run = show(api, resumed)
    assert run["output"] == {
        "data": {"early": "resume"},
        "timed_out": False,
        "asked": {"asked": True},
    }
    assert step_of(run, "ask")["resume_data"] == {"early": "resume"}

    time.sleep(2)  # the canceled run's step has ended by now; nothing of it may be recorded
    run = show(api, canceled)
    assert run["status"] == "canceled"
    assert [s["status"] for s in run["steps"]] in (["canceled", "pending"], ["pending", "pending"])
    assert log.read_text().split() == [resumed], processes.output()


WAIT_LOOP = """\
def post(path, i):
    with open(path, "a") as f:
        f.write(f"post_{i}\\n")
    return i * 10

def run(ctx):
    total = 0
    for i in range(3):
        total += ctx.task(f"post_{i}", post, ctx.input["log"], i)
        ctx.send_email(to="ops@example.com", subject=f"posted {i}", text=f"posted {i}")
        ctx.wait(f"wait_{i}", 1)
    return {"total": total, "runs": ctx.run.runs, "attempt": ctx.run.attempt}
"""


@pytest.mark.slow
def test_ctx_wait_in_a_loop_on_real_processes(app, define, api, processes, mailing, tmp_path):
    wait = waiter(processes)
    log = tmp_path / "posts.txt"
    define("loop", [("loop", WAIT_LOOP)])
    processes.worker()
    processes.scheduler()
    run_id = start(api, "loop", log=str(log))

    seen = []
    naps = set()  # each sleeping period has its own wake-up time

    def finished() -> bool:
        row = query(select(Run.status, Run.wake_at).where(Run.id == run_id))[0]
        status = str(row.status)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == "sleeping":
            naps.add(row.wake_at)
            step = step_of(show(api, run_id), "loop")
            assert step["status"] == "sleeping"
        return status == "completed"

    wait(finished, "the loop to complete", timeout=90)
    assert len(naps) >= 2, (seen, naps)  # asleep between the iterations
    run = show(api, run_id)
    assert run["output"] == {"total": 30, "runs": 1, "attempt": 1}
    assert log.read_text().split() == ["post_0", "post_1", "post_2"]  # each body once
    subjects = [m["Subject"] for m in mailing.received()]
    assert subjects == ["posted 0", "posted 1", "posted 2"], subjects
    assert [(m.subject, m.status) for m in outbox(run_id)] == [
        (f"posted {i}", "sent") for i in range(3)
    ]
    assert query(select(StepRun.runs).where(StepRun.run_id == run_id)) == [(1,)]


BLOCKING_POLL = """\
import os, time

def run(ctx):
    folder, n = ctx.input["dir"], ctx.run.runs
    links = ctx.flow.rerun(ctx.input["delay"], max_retries=1)
    with open(f"{folder}/url{n}.tmp", "w") as f:
        f.write(links.resume_url)
    os.rename(f"{folder}/url{n}.tmp", f"{folder}/url{n}")
    while not os.path.exists(f"{folder}/release{n}"):
        time.sleep(0.05)
    return {"runs": n, "callback": ctx.run.callback_request}
"""


@pytest.mark.slow
def test_rerun_links_used_while_the_step_executes(app, define, api, client, processes, tmp_path):
    wait = waiter(processes)
    define("poll", [("poll", BLOCKING_POLL)])
    processes.worker()
    processes.scheduler()

    # A callback that comes before the first execution's checkpoint wakes the rerun at once
    # (the delay is 30 s) and is that rerun's callback_request.
    early = tmp_path / "early"
    early.mkdir()
    early.chmod(0o777)  # the step, running as STEP_USER, writes here
    run_id = start(api, "poll", dir=str(early), delay=30)
    wait((early / "url1").exists, "the first execution to hand out its links")
    link = path_of((early / "url1").read_text())
    assert status_of(run_id) == "running"  # (and ends this session's read snapshot)
    answer = client.post(link + "?from=early", json={"early": True})
    assert answer.status_code == 200, answer.json
    assert answer.json == {"run": run_id, "action": "resumed", "status": "running"}
    began = time.monotonic()
    (early / "release1").touch()
    wait((early / "url2").exists, "the rerun to start", timeout=20)
    assert time.monotonic() - began < 20
    assert client.post(link, json={"again": True}).json["action"] == "already_resumed"
    (early / "release2").touch()
    wait(lambda: status_of(run_id) == "completed", "the early-woken run to complete")
    output = show(api, run_id)["output"]
    assert output["runs"] == 2
    assert output["callback"]["json"] == {"early": True}
    assert output["callback"]["query"] == {"from": "early"}

    # The timer came first: once the rerun executes, the previous execution's link is over.
    late = tmp_path / "late"
    late.mkdir()
    late.chmod(0o777)
    run_id = start(api, "poll", dir=str(late), delay=0.2)
    wait((late / "url1").exists, "the first execution to hand out its links")
    (late / "release1").touch()
    wait((late / "url2").exists, "the timer to rerun the step")
    assert status_of(run_id) == "running"
    answer = client.post(path_of((late / "url1").read_text()), json={"late": True})
    assert answer.status_code == 410, answer.json
    (late / "release2").touch()
    wait(lambda: status_of(run_id) == "completed", "the timer-woken run to complete")
    assert show(api, run_id)["output"] == {"runs": 2, "callback": None}


def test_after_a_secret_key_rotation_links_keep_working(
    app, define, api, work, client, monkeypatch
):
    """Links are found by the hash of their token, so emailed links outlive the key; with the
    old key in SECRET_KEY_FALLBACKS the API (and a replay) hand out the same links."""
    from console import runs as domain

    define("approval", APPROVAL)
    run_a, run_b, run_c = suspended_runs(api, work, "approval", 3)
    emailed = {r: links_of(api, r) for r in (run_a, run_b, run_c)}
    old_key = app.config["SECRET_KEY"]
    monkeypatch.setitem(app.config, "SECRET_KEY", "a-brand-new-secret-key")
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [old_key])

    assert links_of(api, run_a) == emailed[run_a]  # signed again with the key it was made under
    answer = client.post(emailed[run_a]["resume"], json={"ok": 1})
    assert answer.json["action"] == "resumed"

    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [])  # the old key dropped
    decision = domain.decide_run(run_b, "resume", {"by": "console"})  # needs no key at all
    assert decision.ok, decision.message
    assert client.post(emailed[run_c]["cancel"]).json["action"] == "canceled"  # by its hash

    # A run that suspends now gets links under the new key, and they work.
    (run_d,) = suspended_runs(api, work, "approval", 1)
    fresh = links_of(api, run_d)
    assert client.post(fresh["resume"], json={"ok": 2}).json["action"] == "resumed"
    work(
        until=lambda: all(status_of(r) in ("completed", "canceled") for r in (run_a, run_b, run_d))
    )
    assert [status_of(r) for r in (run_a, run_b, run_c, run_d)] == [
        "completed",
        "completed",
        "canceled",
        "completed",
    ]
    assert show(api, run_b)["output"]["data"] == {"by": "console"}


def test_the_answer_says_pending_even_when_a_worker_claims_the_run_at_once(
    app, define, api, work, client, monkeypatch
):
    """Workers no longer fork per job, so one may claim the resumed run between the link's
    write and its answer: the answer says what the link did (the run is pending)."""
    from console.runs import waits

    define("approval", APPROVAL)
    (run_id,) = suspended_runs(api, work, "approval", 1)
    links = links_of(api, run_id)
    enqueue = waits.enqueue_run

    def enqueue_and_claim(run: str) -> Any:
        job = enqueue(run)
        # What a waiting worker does at once, on a connection of its own.
        with db.engine.begin() as conn:
            conn.execute(
                update(Run).where(Run.id == run).values(status="running", lease_owner="quick")
            )
        return job

    monkeypatch.setattr(waits, "enqueue_run", enqueue_and_claim)
    done = client.post(links["resume"], json={"approved": True})
    assert done.json == {"run": run_id, "action": "resumed", "status": "pending"}
    assert status_of(run_id) == "running"
