"""The Tasks page, Approvals and the run page through the test client (both databases):
cards, filters, cursor paging, counts, actions per state, stale actions, bulk actions,
approve and reject, the live poll, the run page's story, and who may do what."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from console import runs as domain
from console.errors import ConsoleError
from console.extensions import db
from console.models import BulkAction, OutboxMessage, Run
from console.serialize import run_detail
from console.tasks import queries
from console.tasks.queries import PAGE_SIZE
from console.timeutil import utcnow
from tests.support import code

HX = {"HX-Request": "true"}
APPROVAL = [
    (
        "ask",
        code("links = ctx.flow.suspend(timeout=ctx.input.get('timeout', 3600))\nreturn 'asked'"),
    ),
    (
        "use",
        code("return {'got': ctx.steps.ask.resume_data, 'timed_out': ctx.steps.ask.timed_out}"),
    ),
]


def cards(html: str) -> list[str]:
    return re.findall(r'<article class="run-card[^"]*" id="run-([0-9a-z]{26})"', html)


def card_html(html: str, run_id: str) -> str:
    start = html.index(f'id="run-{run_id}"')
    return html[start : html.index("</article>", start)]


def status_of(run_id: str) -> str:
    db.session.expire_all()
    status = db.session.get(Run, run_id).status
    db.session.commit()
    return status


@pytest.fixture
def operator(app, auth):
    return auth.login("operator", "op@example.com")


def act(client, csrf, run_id, action, **data):
    return client.post(
        f"/tasks/runs/{run_id}/{action}", data={"csrf_token": csrf, **data}, headers=HX
    )


def test_cards_filters_counts_and_cursor_paging(app, client, operator, define, work):
    sync = define("sync_orders", [("fetch", code()), ("store", code())], title="Sync orders")
    mail = define("mailer", [("send", code())])
    done, _ = domain.start_run(mail, {}, trigger="schedule:nightly")
    work()
    pending = [domain.start_run(sync, {"n": i}, trigger="api")[0].id for i in range(PAGE_SIZE + 3)]

    html = client.get("/tasks").get_data(as_text=True)
    shown = cards(html)
    assert shown == sorted(pending, reverse=True)[:PAGE_SIZE]  # newest first, one page
    card = card_html(html, pending[-1])
    assert "Sync orders" in card and "v1" in card and "status-pending" in card
    assert "1 of 2" in card and "<code>fetch</code>" in card and "API" in card
    # Counts per status are links that filter.
    assert re.search(r"status=pending[^>]*>.*?<strong>28</strong>", html, re.S)
    assert re.search(r"status=completed[^>]*>.*?<strong>1</strong>", html, re.S)

    older = re.search(r'href="(/tasks\?before=[0-9a-z]{26})"', html).group(1)
    rest = cards(client.get(older).get_data(as_text=True))
    assert rest == sorted(pending, reverse=True)[PAGE_SIZE:] + [done.id]

    completed = client.get("/tasks?status=completed").get_data(as_text=True)
    assert cards(completed) == [done.id]
    assert "schedule <strong>nightly</strong>" in completed and "1 of 1 done" in completed
    assert cards(client.get("/tasks?workflow=mailer").get_data(as_text=True)) == [done.id]
    found = client.get(f"/tasks?q={pending[3][:20].upper()}").get_data(as_text=True)
    assert cards(found) == [pending[3]]
    assert "not a run id" in client.get("/tasks?q=not-an-id!").get_data(as_text=True)
    assert cards(client.get("/tasks?range=1h&workflow=mailer").get_data(as_text=True)) == [done.id]
    # A time range in the viewer's timezone: nothing was started tomorrow.
    tomorrow = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    empty = client.get(f"/tasks?start={tomorrow}&tz=Asia/Seoul").get_data(as_text=True)
    assert cards(empty) == [] and "No run matches these filters" in empty
    # htmx asks for the board alone (filters swap it without a page reload).
    board = client.get("/tasks?status=completed", headers={**HX, "HX-Target": "board"})
    assert board.get_data(as_text=True).lstrip().startswith("{#") is False
    assert "<html" not in board.get_data(as_text=True) and 'id="board"' in board.get_data(
        as_text=True
    )


def test_empty_tasks_and_home_redirect(app, client, operator):
    assert client.get("/").headers["Location"].endswith("/tasks")
    html = client.get("/tasks").get_data(as_text=True)
    assert "No runs yet" in html and "flask runs start" in html
    approvals = client.get("/approvals").get_data(as_text=True)
    assert "Nothing is waiting for approval" in approvals and "ctx.flow.suspend" in approvals


def test_actions_follow_the_state_and_stale_actions_say_so(app, client, operator, define, work):
    wf = define("two", [("a", code()), ("b", code())])
    run, _ = domain.start_run(wf, {})
    card = card_html(client.get("/tasks").get_data(as_text=True), run.id)
    assert "act-pause" in card and "act-cancel" in card and "act-resume" not in card
    assert 'hx-confirm="Cancel run' in card

    paused = act(client, operator, run.id, "pause")
    body = paused.get_data(as_text=True)
    assert paused.status_code == 200 and "status-paused" in body and "Paused" in body
    assert "act-resume" in body and "act-pause" not in body and "<html" not in body
    assert status_of(run.id) == "paused"

    domain.cancel_run(run.id)  # someone else, elsewhere
    stale = act(client, operator, run.id, "resume")
    text = stale.get_data(as_text=True)
    assert stale.status_code == 200
    assert "This run is canceled now, so it cannot be resumed." in text
    after = text.split("card-message")[1]
    assert "status-canceled" in text and "act-rerun" in after  # a canceled run's next move
    assert not any(f"act-{a}" in after for a in ("pause", "resume", "cancel", "approve"))
    assert act(client, operator, run.id, "cancel").status_code == 200  # stale again, no 500

    other, _ = domain.start_run(wf, {})
    work()
    done = card_html(client.get("/tasks").get_data(as_text=True), other.id)
    assert "status-completed" in done and "act-rerun" in done
    assert not any(f"act-{a}" in done for a in ("pause", "resume", "cancel", "approve"))
    # Without htmx: flash and redirect back.
    plain = client.post(f"/tasks/runs/{other.id}/pause", data={"csrf_token": operator})
    assert plain.status_code == 302
    assert "cannot be paused" in client.get(plain.headers["Location"]).get_data(as_text=True)
    assert act(client, operator, "0" * 26, "pause").status_code == 404
    # Without JavaScript, Cancel asks on a page first.
    third, _ = domain.start_run(wf, {})
    asked = client.post(f"/tasks/runs/{third.id}/cancel", data={"csrf_token": operator})
    assert f"Cancel run <code>{third.id}</code>?" in asked.get_data(as_text=True)
    assert status_of(third.id) == "pending"
    done = client.post(
        f"/tasks/runs/{third.id}/cancel", data={"csrf_token": operator, "confirmed": "yes"}
    )
    assert done.status_code == 302 and status_of(third.id) == "canceled"


def test_an_unknown_action_is_refused_and_changes_nothing(app, client, operator, define):
    """The Tasks page, the API, the CLI and bulk actions share one action table: a name that
    is not in it answers 400 (it used to fall back to cancel)."""
    wf = define("keep", [("a", code())])
    run, _ = domain.start_run(wf, {})
    for headers in (HX, {}):
        answer = client.post(
            f"/tasks/runs/{run.id}/bogus",
            data={"csrf_token": operator, "confirmed": "yes"},
            headers=headers,
        )
        assert answer.status_code == 400
        assert "Unknown action &#39;bogus&#39;" in answer.get_data(as_text=True)
        assert status_of(run.id) == "pending"
    assert set(domain.ACTIONS) == {"pause", "resume", "cancel"}
    with pytest.raises(ConsoleError, match="Unknown action 'bogus'") as refused:
        domain.bulk_act("bogus", domain.RunFilter())
    assert refused.value.status == 400
    assert status_of(run.id) == "pending"


def test_viewers_read_and_operators_act(app, client, auth, define):
    wf = define("one", [("a", code())])
    run, _ = domain.start_run(wf, {})
    csrf = auth.login("viewer")
    html = client.get("/tasks").get_data(as_text=True)
    assert run.id in html and "act-pause" not in html and 'class="bulk"' not in html
    run_page = client.get(f"/runs/{run.id}")
    assert run_page.status_code == 200 and "act-" not in run_page.get_data(as_text=True)
    assert act(client, csrf, run.id, "pause").status_code == 403
    bulk = client.post("/tasks/bulk", data={"csrf_token": csrf, "action": "cancel"})
    assert bulk.status_code == 403
    assert status_of(run.id) == "pending"


def test_bulk_actions_over_the_filter(app, client, operator, define):
    sync = define("sync", [("a", code())])
    other = define("other", [("a", code())])
    held = [domain.start_run(sync, {})[0].id for _ in range(3)]
    free = domain.start_run(other, {})[0].id
    domain.cancel_run(held[0])

    html = client.get("/tasks?workflow=sync").get_data(as_text=True)
    assert 'hx-confirm="Pause 2 runs matching these filters?"' in html
    answer = client.post(
        "/tasks/bulk",
        data={"csrf_token": operator, "action": "pause", "workflow": "sync"},
        headers=HX,
    ).get_data(as_text=True)
    assert "Paused 2 runs." in answer and 'id="board"' in answer
    assert [status_of(r) for r in held] == ["canceled", "paused", "paused"]
    assert status_of(free) == "pending"

    result = domain.bulk_act("resume", domain.RunFilter(workflow_id=sync.id))
    assert (result.changed, result.skipped) == (2, 0)
    assert [status_of(r) for r in held[1:]] == ["pending", "pending"]
    # Without JavaScript a bulk cancel asks on a page first, stating the count.
    form = {"csrf_token": operator, "action": "cancel", "status": "pending"}
    asked = client.post("/tasks/bulk", data=form).get_data(as_text=True)
    assert "Cancel 3 runs?" in asked and 'name="confirmed" value="yes"' in asked
    assert status_of(free) == "pending"
    plain = client.post("/tasks/bulk", data={**form, "confirmed": "yes"})
    assert plain.status_code == 302 and "status=pending" in plain.headers["Location"]
    assert "Canceled 3 runs." in client.get(plain.headers["Location"]).get_data(as_text=True)
    assert {status_of(r) for r in [*held, free]} == {"canceled"}


def test_approve_and_reject_from_the_console(app, client, operator, define, work, monkeypatch):
    wf = define("approval", APPROVAL)
    later, _ = domain.start_run(wf, {"timeout": 7200})
    sooner, _ = domain.start_run(wf, {"timeout": 600})
    third, _ = domain.start_run(wf, {})
    work(until=lambda: all(status_of(r.id) == "suspended" for r in (later, sooner, third)))

    page = client.get("/approvals").get_data(as_text=True)
    assert cards(page) == [sooner.id, third.id, later.id]  # soonest deadline first
    page_size = queries.APPROVALS_PAGE
    monkeypatch.setattr(queries, "APPROVALS_PAGE", 2)
    first = client.get("/approvals").get_data(as_text=True)
    assert cards(first) == [sooner.id, third.id]
    later_page = re.search(r'href="(/approvals\?after=[^"]+)"', first).group(1)
    assert cards(client.get(later_page.replace("&amp;", "&")).get_data(as_text=True)) == [later.id]
    monkeypatch.setattr(queries, "APPROVALS_PAGE", page_size)
    card = card_html(page, sooner.id)
    assert "deadline" in card and "<code>ask</code>" in card
    # Approve and Reject are in sight; only the optional comment or payload folds away.
    before_fold = card.split('<details class="decide-note"')[0]
    assert ">Approve</button>" in before_fold and ">Reject</button>" in before_fold

    approved = act(client, operator, sooner.id, "approve", comment="Looks good")
    assert "Approved" in approved.get_data(as_text=True)
    rejected = act(client, operator, later.id, "reject")
    assert "Rejected" in rejected.get_data(as_text=True)
    bad = act(client, operator, third.id, "approve", payload="{nope")
    assert "not valid JSON" in bad.get_data(as_text=True) and status_of(third.id) == "suspended"
    act(client, operator, third.id, "approve", payload='{"approved_by": "ops", "n": 2}')
    work()
    db.session.expire_all()
    assert db.session.get(Run, sooner.id).output == {
        "got": {"comment": "Looks good"},
        "timed_out": False,
    }
    assert db.session.get(Run, third.id).output["got"] == {"approved_by": "ops", "n": 2}
    assert db.session.get(Run, later.id).status == "canceled"
    # The same decision again, or the other one, after the fact: a message and a fresh card.
    again = act(client, operator, sooner.id, "reject").get_data(as_text=True)
    assert "no longer waits for a decision: it is completed" in again
    assert "status-completed" in again
    assert cards(client.get("/approvals").get_data(as_text=True)) == []


def test_live_poll_answers_only_changed_cards(app, client, operator, define, work):
    wf = define("live", [("a", code())])
    run, _ = domain.start_run(wf, {})
    html = client.get("/tasks").get_data(as_text=True)
    stamp = re.search(rf'id="run-{run.id}" data-run="{run.id}" data-stamp="([^"]+)"', html)
    assert stamp and "data-live" in card_html(html, run.id) and 'id="tasks-poll"' in html
    same = client.get(f"/tasks/updates?v={run.id}~{stamp.group(1)}", headers=HX)
    assert same.status_code == 204
    work()
    moved = client.get(f"/tasks/updates?v={run.id}~{stamp.group(1)}", headers=HX)
    body = moved.get_data(as_text=True)
    assert moved.status_code == 200 and 'hx-swap-oob="true"' in body
    assert "status-completed" in body and "data-live" not in body  # it stops polling
    assert "status-counts" not in body  # an older page's poll has no counts to redraw

    # The first page's poll redraws the counts per status as well, under its filters.
    first = f"/tasks/updates?v={run.id}~{stamp.group(1)}&newest={run.id}&workflow=live"
    counted = client.get(first, headers=HX).get_data(as_text=True)
    assert 'id="status-counts" aria-label="Runs by status" hx-swap-oob="true"' in counted
    assert re.search(r"completed</span> <strong>1</strong>", counted)
    assert re.search(r"pending</span> <strong>0</strong>", counted)
    assert '<div id="bulk-actions" hx-swap-oob="true">' in counted  # with the counts it states

    # The first page of Tasks also asks for runs started since, under its filters.
    newer, _ = domain.start_run(wf, {})
    fresh = client.get(f"/tasks/updates?v=&newest={run.id}&workflow=live", headers=HX)
    text = fresh.get_data(as_text=True)
    assert 'hx-swap-oob="afterbegin:#cards"' in text and cards(text) == [newer.id]
    other = client.get(f"/tasks/updates?v=&newest={run.id}&status=completed", headers=HX)
    assert other.status_code == 204  # the new run is pending: it does not match yet


def test_run_page_tells_the_story(app, client, operator, define, work):
    flaky = code(
        "ctx.logger.info('trying', attempt=ctx.run.attempt)\n"
        "if ctx.run.attempt < 2:\n"
        "    raise RuntimeError('first attempt fails')\n"
        "ctx.logger.warning('second time lucky')\n"
        "return {'ok': True}"
    )
    wf = define(
        "story",
        [
            {"name": "flaky", "code": flaky, "retries": 1, "retry_delay": 0},
            ("ask", code("ctx.flow.suspend(timeout=60)\nreturn 'asked'")),
            ("last", code("return ctx.steps.ask.resume_data")),
        ],
    )
    run, _ = domain.start_run(wf, {"who": "ada"})
    work(until=lambda: status_of(run.id) == "suspended")
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert "status-suspended" in page and "for approval at <code>ask</code>" in page
    assert "RuntimeError: first attempt fails" in page  # the traceback of the failed attempt
    assert "level-warning" in page and "second time lucky" in page and "attempt 2" in page
    assert '"who": "ada"' in page and "not available yet" not in page
    # Each attempt with its own start and error; the suspend counted as waiting, and the
    # step that waits is not done.
    flaky_step = page.split('id="step-flaky"')[1].split('id="step-ask"')[0]
    assert "Execution 1: attempt 1" in flaky_step and "Execution 2: attempt 2" in flaky_step
    assert "RuntimeError: first attempt fails</code>" in flaky_step
    assert "Retry backoff" in flaky_step
    ask_step = page.split('id="step-ask"')[1].split('id="step-last"')[0]
    assert "waiting" in ask_step and "Suspended" in ask_step and "so far" in ask_step
    assert "1 of 3 steps done" in page and "act-rerun" not in page  # not finished yet
    stamp = re.search(r'id="run-live" class="run-live" data-stamp="([^"]+)"', page).group(1)
    assert 'hx-trigger="every 2s"' in page
    assert client.get(f"/runs/{run.id}/live?stamp={stamp}").status_code == 204

    answer = client.post(
        f"/tasks/runs/{run.id}/approve",
        data={"csrf_token": operator, "view": "run", "comment": "ship it"},
        headers=HX,
    ).get_data(as_text=True)
    assert answer.lstrip().startswith('<div id="run-live"') and "Approved" in answer
    work()
    live = client.get(f"/runs/{run.id}/live?stamp={stamp}").get_data(as_text=True)
    assert "status-completed" in live and 'hx-trigger="every 2s"' not in live
    assert "resume_data" in live and '"comment": "ship it"' in live
    assert "(resumed)" in live and "waited" in live and "3 of 3 steps done" in live

    # A worker that died: the run is taken over and its completed steps are replayed.
    db.session.execute(
        update(Run)
        .where(Run.id == run.id)
        .values(
            status="running",
            lease_owner="dead-worker",
            lease_expires_at=utcnow() - timedelta(seconds=5),
            finished_at=None,
        )
    )
    db.session.commit()
    from workers.jobs import Runner

    assert Runner(run.id).advance() == "completed"
    replayed = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert replayed.count("replayed from checkpoint") == 3 and "Replays</dt><dd>1 " in replayed
    # A completed run allows no action but a re-run.
    assert "act-rerun" in replayed and "act-pause" not in replayed and "act-cancel" not in replayed
    assert client.get(f"/runs/{'0' * 26}").status_code == 404

    # Canceled while waiting: the steps it never reached say so (the API says pending).
    other, _ = domain.start_run(wf, {"who": "bo"})
    work(until=lambda: status_of(other.id) == "suspended")
    page = client.get(f"/runs/{other.id}").get_data(as_text=True)
    assert "not run" not in page and "ended before this step" not in page  # "last" may still run
    domain.cancel_run(other.id)
    page = client.get(f"/runs/{other.id}").get_data(as_text=True)
    last = page[page.index('id="step-last"') :]
    assert "not run" in last[: last.index("</li>")] and page.count("not run") == 1
    assert page.count("The run ended before this step.") == 1
    db.session.expire_all()
    assert run_detail(domain.get_run(other.id))["steps"][2]["status"] == "pending"


def test_the_approvals_poll_tells_of_runs_that_started_waiting_since(
    app, client, operator, define, work
):
    wf = define("approval", APPROVAL)
    empty = client.get("/approvals").get_data(as_text=True)
    assert "data-watch" in empty  # even an empty list keeps asking
    first, _ = domain.start_run(wf, {})
    work(until=lambda: status_of(first.id) == "suspended")

    page = client.get("/approvals").get_data(as_text=True)
    poll = re.search(r'id="tasks-poll" hidden hx-get="([^"]+)"', page).group(1)
    poll = poll.replace("&amp;", "&")
    assert "waiting_since=" in poll
    stamp = re.search(rf'id="run-{first.id}" data-run="{first.id}" data-stamp="([^"]+)"', page)
    known = f"{poll}&v={first.id}~{stamp.group(1)}"
    assert client.get(known, headers=HX).status_code == 204  # its own card is not news

    second, _ = domain.start_run(wf, {})
    work(until=lambda: status_of(second.id) == "suspended")
    news = client.get(known, headers=HX)
    body = news.get_data(as_text=True)
    assert news.status_code == 200 and 'id="approvals-news"' in body
    assert "1 more run is waiting for a decision" in body and cards(body) == []
    # Later pages of Approvals and the Tasks page do not ask.
    later = client.get(f"/approvals?after=~{first.id}").get_data(as_text=True)
    assert "waiting_since=" not in later and "data-watch" not in later


def test_a_large_bulk_action_runs_on_a_worker_with_progress(
    app, client, operator, define, work, monkeypatch
):
    from console.runs import bulk

    monkeypatch.setitem(app.config, "BULK_INLINE_MAX", 2)
    monkeypatch.setattr(bulk, "BULK_BATCH", 2)
    wf = define("approval", APPROVAL)
    waiting = [domain.start_run(wf, {})[0].id for _ in range(5)]
    work(until=lambda: all(status_of(r) == "suspended" for r in waiting))

    form = {"csrf_token": operator, "action": "cancel", "workflow": "approval"}
    html = client.post("/tasks/bulk", data=form, headers=HX).get_data(as_text=True)
    assert "Canceling 5 runs in the background; progress below." in html
    job_id = re.search(r'id="bulk-([0-9a-z]{26})"', html).group(1)
    assert "0 of 5 done (waiting for a worker)" in html and 'hx-trigger="every 1s"' in html
    assert {status_of(r) for r in waiting} == {"suspended"}  # the request itself changed none
    assert f'id="bulk-{job_id}"' in client.get("/tasks").get_data(as_text=True)  # for everyone

    work()  # a worker takes the job from the run queue
    done = client.get(f"/tasks/bulk/{job_id}", headers=HX).get_data(as_text=True)
    assert "Canceled 5 runs" in done and "hx-trigger" not in done  # it stops polling
    assert {status_of(r) for r in waiting} == {"canceled"}
    db.session.expire_all()
    job = db.session.get(BulkAction, job_id)
    assert (job.status, job.total, job.changed, job.skipped) == ("completed", 5, 5, 0)
    assert bulk.execute(job_id) is None  # a second delivery of the job does nothing
    assert f'id="bulk-{job_id}"' not in client.get("/tasks").get_data(as_text=True)
    page = client.get(f"/tasks/bulk/{job_id}")  # without JavaScript: a page of its own
    assert page.status_code == 200 and "Bulk cancel" in page.get_data(as_text=True)

    # Without JavaScript the confirmed form leads to that page.
    more = [domain.start_run(wf, {})[0].id for _ in range(3)]
    plain = client.post("/tasks/bulk", data={**form, "action": "pause", "confirmed": "yes"})
    assert plain.status_code == 302 and "/tasks/bulk/" in plain.headers["Location"]
    queued = bulk.get(plain.headers["Location"].rsplit("/", 1)[1])
    assert (queued.action, queued.status, queued.total) == ("pause", "queued", 3)
    # The job records progress after every batch (two runs a batch here).
    seen: list[tuple[int, int]] = []
    domain.bulk_act("pause", domain.RunFilter(workflow_id=wf.id), lambda *c: seen.append(c))
    assert seen == [(2, 0), (3, 0)] and {status_of(r) for r in more} == {"paused"}


ASK_BY_EMAIL = [
    (
        "ask",
        code(
            "links = ctx.flow.suspend(timeout=600)\n"
            "ctx.send_email(to=['boss@example.com', 'cto@example.com'],\n"
            "               subject='Approval needed: ship 1.2',\n"
            "               text='Ship release 1.2?\\nApprove: ' + links.resume_url)\n"
            "return 'asked'"
        ),
    ),
    ("use", code("return ctx.steps.ask.resume_data")),
]


def test_what_is_approved_shows_on_cards_run_page_and_the_link_page(
    app, client, auth, define, work
):
    wf = define("shipping", ASK_BY_EMAIL)
    run, _ = domain.start_run(wf, {})
    work(until=lambda: status_of(run.id) == "suspended")
    sent = db.session.scalars(db.select(OutboxMessage).filter_by(run_id=run.id)).one()
    token_path = re.search(r"/flow/resume/\S+", sent.text).group(0)
    db.session.commit()

    auth.login("viewer")
    for path in ("/approvals", "/tasks", f"/runs/{run.id}"):
        page = client.get(path).get_data(as_text=True)
        assert "Approval needed: ship 1.2" in page, path
        assert "to boss@example.com, cto@example.com" in page and "Ship release 1.2?" in page
        assert token_path not in page and "/flow/resume/[hidden]" in page  # viewers see no links
    auth.logout()
    auth.login("operator", "op@example.com")
    card = card_html(client.get("/approvals").get_data(as_text=True), run.id)
    assert "Approval needed: ship 1.2" in card and token_path in card
    forged = act(client, "forged", run.id, "approve")  # the decision needs its CSRF token
    assert "Approved" not in forged.get_data(as_text=True) and status_of(run.id) == "suspended"
    auth.logout()

    confirm = client.get(token_path)  # public, and a GET changes nothing
    text = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "Approval needed: ship 1.2" in text
    assert "boss@example.com, cto@example.com" in text and "/flow/resume/[hidden]" in text
    assert token_path not in text and status_of(run.id) == "suspended"


def test_a_sleeping_step_shows_its_wait_so_far_and_is_not_done(app, client, auth, define, work):
    wf = define("rests", [("rest", code("ctx.wait('delay', 600)\nreturn 'rested'"))])
    run, _ = domain.start_run(wf, {})
    work(until=lambda: status_of(run.id) == "sleeping")
    auth.login("viewer")
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert "0 of 1 steps done" in page
    rest = page.split('id="step-rest"')[1]
    assert "Sleeping (ctx.wait)" in rest and "so far" in rest and "waiting" in rest
    assert "went to sleep" in rest
    card = card_html(client.get("/tasks").get_data(as_text=True), run.id)
    assert 'value="0" max="1"' in card
