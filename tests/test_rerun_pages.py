"""The Re-run dialog's route and the Recover page's, through the test client: the plan they
show is the dry run's, starting follows it, CSRF is required, GET changes nothing, roles are
checked, refusals keep what was typed and create nothing, and a journal over the limit is 413."""

from __future__ import annotations

import html as html_lib
import io
import json
import re
from typing import Any

import pytest

from console import runs as domain
from console.extensions import db
from console.models import Run, WorkflowVersion

from .support import step

STEPS = [
    step("fetch", "return {'n': ctx.input.get('n', 1)}"),
    step("double", "return ctx.steps.fetch.output['n'] * 2"),
    step("report", "return 'done'"),
]


def run_count() -> int:
    db.session.commit()
    return int(db.session.scalar(db.select(db.func.count()).select_from(Run)) or 0)


def version_count() -> int:
    db.session.commit()
    return int(db.session.scalar(db.select(db.func.count()).select_from(WorkflowVersion)) or 0)


@pytest.fixture
def finished(define: Any, work: Any) -> Run:
    workflow = define("numbers", STEPS)
    run, _ = domain.start_run(workflow, {"n": 3})
    work()
    db.session.expire_all()
    return db.session.get(Run, run.id)


def live_run(run_id: str) -> None:
    assert db.session.get(Run, run_id).status not in ("completed", "failed", "canceled")


def plan_rows(html: str) -> list[tuple[str, str, str]]:
    """(step, reuse|execute, reason) per row of a plan table."""
    rows = re.findall(
        r'<tr class="plan-(\w+)" data-step="(\w+)">.*?<td class="reason">([^<]*)', html, re.S
    )
    return [(name, action, reason.strip()) for action, name, reason in rows]


def dry_run(run: Run, body: dict[str, Any]) -> list[tuple[str, str, str]]:
    plan, _, _ = domain.rerun_plan(run, domain.RerunRequest.parse(body))
    return [(s["name"], s["action"], s["reason"]) for s in plan.view()["steps"]]


def form(token: str, **fields: str) -> dict[str, str]:
    return {"csrf_token": token, "mode": "plain", "version": "original", **fields}


def test_the_dialog_shows_the_dry_runs_plan_and_starting_it_follows_it(
    client: Any, auth: Any, finished: Run
) -> None:
    token = auth.login("operator")
    before = run_count()
    page = client.get(f"/runs/{finished.id}/rerun")
    assert page.status_code == 200 and run_count() == before  # GET changes nothing
    html = page.get_data(as_text=True)
    assert plan_rows(html) == dry_run(finished, {})
    assert "&#34;n&#34;: 3" in html or "&quot;n&quot;: 3" in html  # the input, prefilled

    fields = form(token, mode="from_step", from_step="double", preview="1")
    preview = client.post(f"/runs/{finished.id}/rerun", data=fields, headers={"HX-Request": "true"})
    assert preview.status_code == 200 and run_count() == before
    shown = plan_rows(preview.get_data(as_text=True))
    assert shown == dry_run(finished, {"from_step": "double"})
    assert [a for _, a, _ in shown] == ["reuse", "execute", "execute"]

    started = client.post(f"/runs/{finished.id}/rerun", data={**fields, "preview": ""})
    assert started.status_code == 303
    new_id = started.headers["Location"].rsplit("/", 1)[-1]
    new = db.session.get(Run, new_id)
    assert new.rerun_of == finished.id and run_count() == before + 1
    assert {row.name: row.reused for row in new.steps} == {"fetch": True}
    assert client.get(f"/runs/{finished.id}").get_data(as_text=True).count(new_id) >= 1

    # htmx: the browser is sent to the new run.
    answer = client.post(
        f"/runs/{finished.id}/rerun", data=form(token), headers={"HX-Request": "true"}
    )
    assert answer.status_code == 200 and answer.headers["HX-Redirect"].startswith("/runs/")


def test_refusals_show_at_their_field_keep_what_was_typed_and_create_nothing(
    client: Any, auth: Any, finished: Run, define: Any
) -> None:
    token = auth.login("operator")
    before = run_count()
    url = f"/runs/{finished.id}/rerun"
    bad_json = client.post(url, data=form(token, input='{"n": '))
    html = bad_json.get_data(as_text=True)
    assert bad_json.status_code == 422 and "The input is not valid JSON" in html
    assert re.search(r'id="rerun-input-errors"[^>]*>\s*<p class="field-error"', html)
    assert "{&#34;n&#34;: </textarea>" in html or '{"n": </textarea>' in html  # kept

    not_object = client.post(url, data=form(token, input="[1]"))
    assert not_object.status_code == 422 and "must be an object or null" in not_object.text
    unknown = client.post(url, data=form(token, version="v9"))
    assert unknown.status_code == 422 and "no version &#39;v9&#39;" in unknown.text
    assert re.search(r'id="rerun-version-errors"[^>]*>\s*<p', unknown.text)
    preview = client.post(
        url,
        data=form(token, version="v9", preview="1"),
        headers={"HX-Request": "true"},
    )
    assert preview.status_code == 200 and 'hx-swap-oob="true"' in preview.text
    assert "No plan" in preview.text
    assert run_count() == before

    workflow = define("slow_one", [step("wait", "ctx.flow.suspend(timeout=3600)")])
    held, _ = domain.start_run(workflow, {})
    live_run(held.id)
    conflict = client.post(f"/runs/{held.id}/rerun", data=form(token))
    assert conflict.status_code == 409 and "only a finished run can be re-run" in conflict.text
    assert run_count() == before + 1


def test_csrf_is_required_and_viewers_are_refused(
    client: Any, auth: Any, finished: Run, app: Any
) -> None:
    auth.login("operator")
    before = run_count()
    answer = client.post(f"/runs/{finished.id}/rerun", data={"mode": "plain"})
    assert answer.status_code == 400 and run_count() == before
    answer = client.post("/tasks/recover", data={"journal_text": "{}", "confirm": "yes"})
    assert answer.status_code == 400 and run_count() == before
    auth.logout()

    token = auth.login("viewer")
    page = client.get(f"/runs/{finished.id}").get_data(as_text=True)
    assert "Re-run" not in page and "rerun-dialog" not in page
    assert f"/api/runs/{finished.id}/journal" in page  # viewers may download the journal
    assert client.get(f"/runs/{finished.id}/rerun").status_code == 403
    assert client.post(f"/runs/{finished.id}/rerun", data=form(token)).status_code == 403
    assert client.get("/tasks/recover").status_code == 403
    assert "Recover from a journal" not in client.get("/tasks").get_data(as_text=True)
    assert run_count() == before


def journal_of(client: Any, run_id: str) -> bytes:
    answer = client.get(f"/api/runs/{run_id}/journal")
    assert answer.status_code == 200 and "attachment" in answer.headers["Content-Disposition"]
    return answer.data


def upload(client: Any, token: str, raw: bytes, name: str = "journal.json") -> Any:
    return client.post(
        "/tasks/recover",
        data={"csrf_token": token, "journal": (io.BytesIO(raw), name)},
        content_type="multipart/form-data",
    )


def test_recover_previews_then_confirms_without_the_file_again(
    client: Any, auth: Any, finished: Run
) -> None:
    token = auth.login("operator")
    raw = journal_of(client, finished.id)
    before = run_count()
    assert client.get("/tasks/recover").status_code == 200 and run_count() == before
    preview = upload(client, token, raw)
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and run_count() == before
    assert "pinned to" in html and "<code>v1</code>" in html
    assert [a for _, a, _ in plan_rows(html)] == ["reuse"] * 3
    text = re.search(r'name="journal_text" value="([^"]*)"', html)
    assert text is not None
    confirmed = client.post(
        "/tasks/recover",
        data={
            "csrf_token": token,
            "confirm": "yes",
            "journal_text": html_lib.unescape(text[1]),
        },
        content_type="multipart/form-data",
    )
    assert confirmed.status_code == 303, confirmed.text
    new = db.session.get(Run, confirmed.headers["Location"].rsplit("/", 1)[-1])
    assert new.recovered_from == finished.id and new.trigger == "recover"
    assert run_count() == before + 1
    assert f'href="/runs/{finished.id}"' in client.get(f"/runs/{new.id}").text

    # A journal of another console's run: its id is shown, not linked.
    doc = json.loads(raw)
    doc["run"]["id"] = "elsewhere-run-1"
    other = client.post(
        "/tasks/recover",
        data={"csrf_token": token, "confirm": "yes", "journal_text": json.dumps(doc)},
        content_type="multipart/form-data",
    )
    page = client.get(other.headers["Location"]).text
    assert "<code>elsewhere-run-1</code>" in page and 'href="/runs/elsewhere-run-1"' not in page
    assert "a run of another console" in page


def test_a_journal_that_publishes_needs_an_editor_and_problems_are_listed(
    client: Any, auth: Any, finished: Run
) -> None:
    token = auth.login("operator")
    doc = json.loads(journal_of(client, finished.id))
    doc["version"]["definition"]["steps"][2]["code"] = "def run(ctx):\n    return 'new'\n"
    changed = json.dumps(doc).encode()
    before, versions = run_count(), version_count()
    preview = upload(client, token, changed)
    assert preview.status_code == 200
    assert "publishes a new version (editor)" in preview.text
    assert "needs the editor role" in preview.text and "Start the recovered run" not in preview.text
    refused = client.post(
        "/tasks/recover",
        data={"csrf_token": token, "confirm": "yes", "journal_text": changed.decode()},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 403 and "needs the editor role" in refused.text
    assert (run_count(), version_count()) == (before, versions)

    doc["entries"][0]["seq"] = "x"
    doc["workflow"] = "Bad Name"
    invalid = upload(client, token, json.dumps(doc).encode())
    assert invalid.status_code == 422
    assert (
        "<code>/workflow</code>" in invalid.text and "<code>/entries/0/seq</code>" in invalid.text
    )
    not_json = upload(client, token, b"{nope")
    assert not_json.status_code == 400 and "not JSON" in not_json.text
    assert (run_count(), version_count()) == (before, versions)

    auth.logout()
    token = auth.login("editor")
    started = client.post(
        "/tasks/recover",
        data={"csrf_token": token, "confirm": "yes", "journal_text": changed.decode()},
        content_type="multipart/form-data",
    )
    assert started.status_code == 303 and version_count() == versions + 1


def test_a_journal_over_the_limit_is_413_and_creates_nothing(
    client: Any, auth: Any, finished: Run, app: Any
) -> None:
    token = auth.login("operator")
    raw = journal_of(client, finished.id)
    app.config["JOURNAL_MAX_BYTES"] = len(raw) - 1
    before = run_count()
    over = upload(client, token, raw)
    assert over.status_code == 413 and "the limit is" in over.text
    confirm = client.post(
        "/tasks/recover",
        data={"csrf_token": token, "confirm": "yes", "journal_text": raw.decode()},
        content_type="multipart/form-data",
    )
    assert confirm.status_code == 413
    # Far over: refused while the body is read, before the view; the page still says why.
    huge = upload(client, token, raw + b" " * (200 * 1024))
    assert huge.status_code == 413 and "the limit is" in huge.text
    assert run_count() == before
    app.config["JOURNAL_MAX_BYTES"] = len(raw)
    assert upload(client, token, raw).status_code == 200


def test_the_journal_of_an_unfinished_run_says_both_will_go_on(
    client: Any, auth: Any, define: Any, work: Any
) -> None:
    token = auth.login("operator")
    workflow = define("asks", [step("ask", "ctx.flow.suspend(timeout=3600)"), step("then")])
    held, _ = domain.start_run(workflow, {})
    work(until=lambda: db.session.get(Run, held.id).status == "suspended")
    before = run_count()
    preview = upload(client, token, journal_of(client, held.id))
    assert preview.status_code == 200 and run_count() == before
    assert "<strong>suspended</strong> when it" in preview.text
    assert "The original run is not touched" in preview.text and "both will go on" in preview.text
    assert [a for _, a, _ in plan_rows(preview.text)] == ["execute", "execute"]
