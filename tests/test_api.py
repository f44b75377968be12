"""The HTTP API (docs/api.md) as a client sees it: status codes and JSON bodies."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select, update

from console.extensions import db
from console.models import ApiToken, User
from console.timeutil import utcnow
from tests.conftest import run_status

from .support import details_by_path, log_in, step

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
RUN_KEYS = {
    "id",
    "workflow",
    "version",
    "status",
    "trigger",
    "input",
    "output",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "compute_ms",
    "rerun_of",
    "recovered_from",
    "steps",
}
STEP_KEYS = {
    "name",
    "status",
    "output",
    "resume_data",
    "timed_out",
    "runs",
    "attempts",
    "started_at",
    "finished_at",
    "duration_ms",
    "error",
    "reused",
    "reused_from",
}
SCHEMA = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "format": "email"},
        "count": {"type": "integer", "minimum": 1},
    },
    "required": ["email", "name"],
}


def publish(api: Any, name: str, steps: list[dict[str, Any]], **fields: Any) -> None:
    response = api.put(f"/api/workflows/{name}", json={"steps": steps, **fields})
    assert response.status_code in (200, 201), response.json


def start(api: Any, name: str = "greet", **body: Any) -> Any:
    return api.post(f"/api/workflows/{name}/runs", json=body)


@pytest.fixture
def greet(api: Any) -> str:
    publish(
        api,
        "greet",
        [
            step("one", "return ctx.input.get('n', 1) * 2"),
            step("two", "return ctx.steps.one.output + 1"),
        ],
    )
    return "greet"


# ------------------------------------------------------------------------- starting runs


def test_start_a_run(api, greet, app):
    response = start(api, input={"n": 4})
    assert response.status_code == 202
    data = response.json
    assert set(data) == {"id", "status", "workflow", "version", "url"}
    assert re.fullmatch(r"[0-9a-z]{26}", data["id"])
    assert data["status"] == "pending"
    assert data["workflow"] == "greet"
    assert data["version"] == "v1"
    assert data["url"] == f"{app.config['BASE_URL']}/runs/{data['id']}"
    assert "Idempotent-Replayed" not in response.headers


def test_start_with_an_empty_body_or_no_input(api, greet, work):
    empty = api.post("/api/workflows/greet/runs")
    assert empty.status_code == 202, empty.json
    no_input = start(api)
    assert no_input.status_code == 202
    null_input = start(api, input=None)
    assert null_input.status_code == 202
    work()
    for answer in (empty, no_input, null_input):
        run = api.get(f"/api/runs/{answer.json['id']}").json
        assert run["input"] == {}
        assert run["output"] == 3


def test_invalid_input_is_422_with_one_detail_per_problem(api):
    publish(api, "signup", [step()], input_schema=SCHEMA)
    response = start(api, "signup", input={"email": "not-an-email", "count": 0})
    assert response.status_code == 422
    assert response.json["error"] == "The input does not match the workflow's input schema"
    assert response.json["details"] == [
        {"path": "/", "message": "'name' is a required property"},
        {"path": "/count", "message": "0 is less than the minimum of 1"},
        {"path": "/email", "message": "'not-an-email' is not a 'email'"},
    ]
    assert api.get("/api/runs").json["data"] == []

    ok = start(api, "signup", input={"email": "a@example.com", "name": "Ann", "count": 2})
    assert ok.status_code == 202, ok.json


@pytest.mark.parametrize("value", [[1, 2], "text", 3])
def test_input_must_be_an_object(api, greet, value):
    response = start(api, input=value)
    assert response.status_code == 422
    assert details_by_path(response) == {"/": "the input must be a JSON object"}


def test_start_body_problems(api, greet):
    unknown = start(api, inputs={"n": 1}, priority=1)
    assert unknown.status_code == 422
    assert unknown.json["error"] == "Unknown fields in the request"
    assert unknown.json["details"] == [
        {"path": "/inputs", "message": "unknown field"},
        {"path": "/priority", "message": "unknown field"},
    ]

    not_object = api.post("/api/workflows/greet/runs", json=[{"n": 1}])
    assert not_object.status_code == 422
    assert "JSON object" in not_object.json["error"]

    not_json = api.post(
        "/api/workflows/greet/runs",
        data="n=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert not_json.status_code == 400
    assert "must be JSON" in not_json.json["error"]

    broken = api.post(
        "/api/workflows/greet/runs",
        data='{"input": {',
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    assert "must be JSON" in broken.json["error"]
    assert api.get("/api/runs").json["data"] == []


def test_start_unknown_workflow_is_404(api):
    response = start(api, "nope", input={})
    assert response.status_code == 404
    assert response.json == {"error": "No workflow named 'nope'", "details": []}


def test_idempotency_key_answers_the_first_run(api, greet):
    first = start(api, input={"n": 1}, idempotency_key="order-42")
    assert first.status_code == 202
    again = start(api, input={"n": 99}, idempotency_key="order-42")
    assert again.status_code == 202
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    other = start(api, input={"n": 1}, idempotency_key="order-43")
    assert other.json["id"] != first.json["id"]
    plain = start(api, input={"n": 1})
    assert plain.json["id"] not in (first.json["id"], other.json["id"])

    runs = api.get("/api/runs").json["data"]
    assert len(runs) == 3
    assert api.get(f"/api/runs/{first.json['id']}").json["input"] == {"n": 1}

    # Keys are per workflow.
    publish(api, "other", [step()])
    elsewhere = start(api, "other", idempotency_key="order-42")
    assert elsewhere.status_code == 202
    assert elsewhere.json["id"] != first.json["id"]


@pytest.mark.parametrize("key", ["", 5, "k" * 256])
def test_bad_idempotency_key(api, greet, key):
    response = start(api, idempotency_key=key)
    assert response.status_code == 422
    assert "idempotency_key" in response.json["error"]


# -------------------------------------------------------------------------- listing runs


def test_list_runs_pages_through_every_run_once(api, greet):
    ids = [start(api, input={"n": i}).json["id"] for i in range(25)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "/api/runs?limit=10" + (f"&cursor={cursor}" if cursor else "")
        response = api.get(query)
        assert response.status_code == 200
        page = response.json
        assert set(page) == {"data", "next_cursor"}
        seen.extend(r["id"] for r in page["data"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == set(ids)
    # Newest first.
    assert seen == sorted(seen, reverse=True)

    default = api.get("/api/runs").json
    assert len(default["data"]) == 25
    assert default["next_cursor"] is None

    exact = api.get("/api/runs?limit=25").json
    assert len(exact["data"]) == 25
    assert exact["next_cursor"] is None


def test_list_run_fields(api, greet):
    run_id = start(api, input={"n": 1}).json["id"]
    [item] = api.get("/api/runs").json["data"]
    assert item["id"] == run_id
    assert item["workflow"] == "greet"
    assert item["version"] == "v1"
    assert item["status"] == "pending"
    assert item["trigger"] == "api"
    assert ISO_UTC.match(item["created_at"])
    assert item["started_at"] is None
    assert item["finished_at"] is None
    assert item["url"].endswith(f"/runs/{run_id}")


def test_list_runs_filters(api, greet):
    publish(api, "other", [step()])
    greet_ids = [start(api).json["id"] for _ in range(6)]
    other_ids = [start(api, "other").json["id"] for _ in range(3)]
    for run_id in greet_ids[:2] + other_ids[:1]:
        assert api.post(f"/api/runs/{run_id}/cancel").status_code == 200
    assert api.post(f"/api/runs/{greet_ids[2]}/pause").status_code == 200

    def ids(query: str) -> set[str]:
        response = api.get(f"/api/runs?{query}")
        assert response.status_code == 200, response.json
        return {r["id"] for r in response.json["data"]}

    assert ids("status=canceled") == set(greet_ids[:2] + other_ids[:1])
    assert ids("status=paused") == {greet_ids[2]}
    assert ids("status=paused,canceled") == set(greet_ids[:3] + other_ids[:1])
    assert ids("status=pending") == set(greet_ids[3:] + other_ids[1:])
    assert ids("status=completed") == set()
    assert ids("workflow=other") == set(other_ids)
    assert ids("workflow=greet&status=canceled") == set(greet_ids[:2])
    assert ids("status=") == set(greet_ids + other_ids)
    assert ids("status=paused,%20canceled,") == set(greet_ids[:3] + other_ids[:1])

    # Filters and paging combine.
    first = api.get("/api/runs?workflow=greet&limit=2").json
    assert len(first["data"]) == 2
    second = api.get(f"/api/runs?workflow=greet&limit=10&cursor={first['next_cursor']}").json
    assert {r["id"] for r in first["data"] + second["data"]} == set(greet_ids)
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    "query, message",
    [
        ("status=done", "Unknown status 'done'"),
        ("status=pending,bogus", "Unknown status 'bogus'"),
        ("limit=0", "limit must be between 1 and 200"),
        ("limit=201", "limit must be between 1 and 200"),
        ("limit=ten", "limit must be an integer"),
        ("cursor=not-a-cursor", "cursor is not valid"),
    ],
)
def test_list_runs_bad_parameters(api, query, message):
    response = api.get(f"/api/runs?{query}")
    assert response.status_code == 422
    assert response.json["error"].startswith(message)


def test_list_runs_of_unknown_workflow_is_404(api):
    response = api.get("/api/runs?workflow=nope")
    assert response.status_code == 404
    assert response.json["error"] == "No workflow named 'nope'"


# ---------------------------------------------------------------------------- run detail


def test_run_detail_of_a_completed_run(api, greet, work):
    started = start(api, input={"n": 4}).json
    work()
    response = api.get(f"/api/runs/{started['id']}")
    assert response.status_code == 200
    run = response.json
    assert set(run) >= RUN_KEYS
    assert run["id"] == started["id"]
    assert run["workflow"] == "greet"
    assert run["version"] == "v1"
    assert run["status"] == "completed"
    assert run["trigger"] == "api"
    assert run["input"] == {"n": 4}
    assert run["output"] == 9
    assert run["error"] is None
    for key in ("created_at", "started_at", "finished_at"):
        assert ISO_UTC.match(run[key]), (key, run[key])
    assert run["created_at"] <= run["started_at"] <= run["finished_at"]
    assert isinstance(run["compute_ms"], int) and run["compute_ms"] >= 0

    assert [s["name"] for s in run["steps"]] == ["one", "two"]
    for item, output in zip(run["steps"], [8, 9], strict=True):
        assert set(item) == STEP_KEYS
        assert item["status"] == "completed"
        assert item["output"] == output
        assert item["resume_data"] is None
        assert item["timed_out"] is False
        assert item["runs"] == 1
        assert item["attempts"] == 1
        assert ISO_UTC.match(item["started_at"])
        assert ISO_UTC.match(item["finished_at"])
        assert isinstance(item["duration_ms"], int) and item["duration_ms"] >= 0
        assert item["error"] is None


def test_run_detail_of_a_pending_run(api, greet):
    started = start(api, input={"n": 4}).json
    run = api.get(f"/api/runs/{started['id']}").json
    assert run["status"] == "pending"
    assert run["output"] is None
    assert run["started_at"] is None
    assert run["finished_at"] is None
    assert run["compute_ms"] == 0
    assert [
        (s["name"], s["status"], s["runs"], s["attempts"], s["started_at"]) for s in run["steps"]
    ] == [("one", "pending", 0, 0, None), ("two", "pending", 0, 0, None)]
    for item in run["steps"]:
        assert set(item) == STEP_KEYS


def test_run_detail_of_a_failed_run(api, work):
    publish(
        api,
        "fragile",
        [
            step("one", "return 'ok'"),
            step("two", "x = 1\nraise ValueError(f'boom {x}')"),
            step("three", "return 'never'"),
        ],
    )
    started = start(api, "fragile").json
    work()
    run = api.get(f"/api/runs/{started['id']}").json
    assert run["status"] == "failed"
    assert "ValueError: boom 1" in run["error"]
    assert ISO_UTC.match(run["finished_at"])
    one, two, three = run["steps"]
    assert (one["status"], one["output"], one["error"]) == ("completed", "ok", None)
    assert two["status"] == "failed"
    assert two["attempts"] == 1
    assert two["output"] is None
    assert 'File "<step two>", line 3, in run' in two["error"]
    assert "raise ValueError(f'boom {x}')" in two["error"]
    assert two["error"].rstrip().endswith("ValueError: boom 1")
    assert three["status"] != "completed"
    assert three["output"] is None


@pytest.mark.parametrize("run_id", ["01hzzzzzzzzzzzzzzzzzzzzzzz", "nope", "x" * 26])
def test_unknown_run_is_404(api, run_id):
    for method, path in (
        ("GET", f"/api/runs/{run_id}"),
        ("GET", f"/api/runs/{run_id}/logs"),
        ("POST", f"/api/runs/{run_id}/pause"),
    ):
        response = api.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json == {"error": f"No run with id {run_id!r}", "details": []}


# ---------------------------------------------------------------------------------- logs


def test_logs_have_logger_and_print_lines(api, work):
    publish(
        api,
        "chatty",
        [
            step(
                "one",
                "ctx.logger.info('fetching user', user_id=7)\n"
                "print('hello from print')\n"
                "print('two', 'words')\n"
                "ctx.logger.warning('slow response')\n"
                "return 1",
            ),
            step(
                "two",
                "ctx.logger.error('bad thing', code=500, tags=['a'])\n"
                "ctx.logger.debug('details')\n"
                "return 2",
            ),
        ],
    )
    run_id = start(api, "chatty").json["id"]
    work()
    response = api.get(f"/api/runs/{run_id}/logs")
    assert response.status_code == 200
    lines = response.json["data"]
    assert [(line["step"], line["level"], line["message"]) for line in lines] == [
        ("one", "info", "fetching user"),
        ("one", "print", "hello from print"),
        ("one", "print", "two words"),
        ("one", "warning", "slow response"),
        ("two", "error", "bad thing"),
        ("two", "debug", "details"),
    ]
    assert lines[0]["fields"] == {"user_id": 7}
    assert lines[4]["fields"] == {"code": 500, "tags": ["a"]}
    for line in lines:
        assert set(line) == {"id", "step", "attempt", "level", "message", "fields", "created_at"}
        assert line["attempt"] == 1
        assert ISO_UTC.match(line["created_at"])
    ids = [line["id"] for line in lines]
    assert ids == sorted(ids)

    after = api.get(f"/api/runs/{run_id}/logs?after={ids[3]}").json["data"]
    assert [line["message"] for line in after] == ["bad thing", "details"]
    limited = api.get(f"/api/runs/{run_id}/logs?limit=2").json["data"]
    assert [line["message"] for line in limited] == ["fetching user", "hello from print"]


def test_logs_of_a_failed_attempt_are_kept(api, work):
    publish(api, "oops", [step("one", "print('about to fail')\nraise RuntimeError('no')")])
    run_id = start(api, "oops").json["id"]
    work()
    lines = api.get(f"/api/runs/{run_id}/logs").json["data"]
    assert [line["message"] for line in lines] == ["about to fail"]


def test_logs_of_a_run_without_logs(api, greet):
    run_id = start(api).json["id"]
    response = api.get(f"/api/runs/{run_id}/logs")
    assert response.status_code == 200
    assert response.json == {"data": []}


@pytest.mark.parametrize(
    "query, message",
    [
        ("after=abc", "after must be a log line id"),
        ("limit=abc", "limit must be an integer"),
        ("limit=0", "limit must be between 1 and 5000"),
        ("limit=-3", "limit must be between 1 and 5000"),
    ],
)
def test_logs_bad_parameters(api, greet, query, message):
    run_id = start(api).json["id"]
    response = api.get(f"/api/runs/{run_id}/logs?{query}")
    assert response.status_code == 422
    assert response.json["error"] == message


# ----------------------------------------------------------------- pause, resume, cancel


def test_pause_resume_cancel(api, greet, work):
    run_id = start(api, input={"n": 1}).json["id"]

    paused = api.post(f"/api/runs/{run_id}/pause")
    assert paused.status_code == 200
    assert paused.json["id"] == run_id
    assert paused.json["status"] == "paused"
    assert set(paused.json) >= RUN_KEYS
    # Pausing a paused run is a no-op.
    again = api.post(f"/api/runs/{run_id}/pause")
    assert again.status_code == 200
    assert again.json["status"] == "paused"

    # A paused run does not start, even though its job is on the queue.
    work(until=lambda: True)
    assert run_status(run_id) == "paused"

    resumed = api.post(f"/api/runs/{run_id}/resume")
    assert resumed.status_code == 200
    assert resumed.json["status"] == "pending"
    # Resuming a resumed run is a no-op.
    assert api.post(f"/api/runs/{run_id}/resume").json["status"] == "pending"

    work()
    done = api.get(f"/api/runs/{run_id}").json
    assert done["status"] == "completed"
    assert done["output"] == 3


def test_cancel_a_pending_run(api, greet, work):
    run_id = start(api).json["id"]
    canceled = api.post(f"/api/runs/{run_id}/cancel")
    assert canceled.status_code == 200
    assert canceled.json["status"] == "canceled"
    assert ISO_UTC.match(canceled.json["finished_at"])
    work()
    run = api.get(f"/api/runs/{run_id}").json
    assert run["status"] == "canceled"
    assert all(s["status"] != "completed" for s in run["steps"])


def test_cancel_a_paused_run(api, greet):
    run_id = start(api).json["id"]
    api.post(f"/api/runs/{run_id}/pause")
    assert api.post(f"/api/runs/{run_id}/cancel").json["status"] == "canceled"


@pytest.mark.parametrize("final", ["completed", "failed", "canceled"])
def test_terminal_runs_refuse_every_action_with_409(api, work, final):
    body = {"completed": "return 1", "failed": "raise ValueError('x')", "canceled": "return 1"}[
        final
    ]
    publish(api, "final", [step("one", body)])
    run_id = start(api, "final").json["id"]
    if final == "canceled":
        api.post(f"/api/runs/{run_id}/cancel")
    work()
    assert run_status(run_id) == final
    for action in ("pause", "resume", "cancel"):
        response = api.post(f"/api/runs/{run_id}/{action}")
        assert response.status_code == 409, action
        assert set(response.json) == {"error", "details"}
        assert response.json["error"].startswith(f"Run {run_id} is {final}")
    assert run_status(run_id) == final


def test_unknown_action_is_400_and_changes_nothing(api, greet):
    run_id = start(api).json["id"]
    response = api.post(f"/api/runs/{run_id}/explode")
    assert response.status_code == 400
    assert "Unknown action 'explode'" in response.json["error"]
    assert run_status(run_id) == "pending"


# ---------------------------------------------------------------------------------- auth


def test_no_token_is_401(client, greet):
    for method, path in (
        ("GET", "/api/workflows"),
        ("GET", "/api/runs"),
        ("POST", "/api/workflows/greet/runs"),
        ("PUT", "/api/workflows/greet"),
    ):
        response = client.open(path, method=method, json={})
        assert response.status_code == 401, path
        assert response.json == {
            "error": "Authentication required: send Authorization: Bearer <token>",
            "details": [],
        }


@pytest.mark.parametrize("header", ["Bearer wfc_not-a-real-token", "Bearer ", "Bearer"])
def test_bad_token_is_401(client, header):
    response = client.get("/api/workflows", headers={"Authorization": header})
    assert response.status_code == 401
    assert "error" in response.json


def test_wrong_token_names_the_problem(client):
    response = client.get("/api/workflows", headers={"Authorization": "Bearer wfc_nope"})
    assert response.json["error"] == "Invalid or revoked API token"


def test_revoked_token_is_401(api, greet):
    assert api.get("/api/workflows").status_code == 200
    token = api.headers["Authorization"].split()[1]
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.token_hash == ApiToken.hash(token))
        .values(revoked_at=utcnow())
    )
    db.session.commit()
    response = api.get("/api/workflows")
    assert response.status_code == 401
    assert response.json["error"] == "Invalid or revoked API token"
    assert start(api).status_code == 401


def test_token_of_a_deactivated_user_is_401(make_api):
    viewer = make_api("viewer")
    assert viewer.get("/api/runs").status_code == 200
    user = db.session.scalar(select(User).where(User.role == "viewer"))
    user.active = False
    db.session.commit()
    assert viewer.get("/api/runs").status_code == 401


def test_token_records_its_last_use(api):
    token = api.headers["Authorization"].split()[1]
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == ApiToken.hash(token)))
    assert row.last_used_at is None
    api.get("/api/runs")
    db.session.refresh(row)
    assert row.last_used_at is not None


def test_viewer_reads_but_cannot_act(make_api, api, greet):
    run_id = start(api).json["id"]
    viewer = make_api("viewer")
    assert viewer.get("/api/workflows").status_code == 200
    assert viewer.get("/api/workflows/greet").status_code == 200
    assert viewer.get("/api/runs").status_code == 200
    assert viewer.get(f"/api/runs/{run_id}").status_code == 200
    assert viewer.get(f"/api/runs/{run_id}/logs").status_code == 200
    refused = start(viewer)
    assert refused.status_code == 403
    assert refused.json == {"error": "This needs the operator role; you are viewer", "details": []}
    for action in ("pause", "resume", "cancel"):
        assert viewer.post(f"/api/runs/{run_id}/{action}").status_code == 403
    assert viewer.put("/api/workflows/greet", json={"steps": [step()]}).status_code == 403
    assert run_status(run_id) == "pending"
    assert len(api.get("/api/runs").json["data"]) == 1


def test_operator_runs_but_cannot_edit(make_api, greet):
    operator = make_api("operator")
    started = start(operator, input={"n": 1})
    assert started.status_code == 202
    run_id = started.json["id"]
    assert operator.post(f"/api/runs/{run_id}/pause").json["status"] == "paused"
    assert operator.post(f"/api/runs/{run_id}/resume").json["status"] == "pending"
    assert operator.post(f"/api/runs/{run_id}/cancel").json["status"] == "canceled"
    refused = operator.put("/api/workflows/greet", json={"steps": [step()]})
    assert refused.status_code == 403
    assert refused.json["error"] == "This needs the editor role; you are operator"
    assert operator.delete("/api/workflows/greet/versions/v1").status_code == 403


def test_editor_edits_and_runs(make_api):
    editor = make_api("editor")
    created = editor.put("/api/workflows/edited", json={"steps": [step()]})
    assert created.status_code == 201
    assert created.json == {"name": "edited", "version": "v1", "published": True}
    assert start(editor, "edited").status_code == 202


def test_session_cookie_needs_the_csrf_token(app, client, greet):
    from console.auth import create_user

    create_user("ops@example.com", "operator", "s3cret-pass")
    token = log_in(client, "ops@example.com", "s3cret-pass")

    # Reading with the session cookie works.
    listed = client.get("/api/workflows")
    assert listed.status_code == 200
    assert [w["name"] for w in listed.json["data"]] == ["greet"]

    # Writing without the CSRF token is refused: another site could send the cookie.
    refused = client.post("/api/workflows/greet/runs", json={"input": {}})
    assert refused.status_code == 400
    assert refused.json["error"].startswith("CSRF check failed")
    assert refused.json["details"] == []
    wrong = client.post(
        "/api/workflows/greet/runs", json={"input": {}}, headers={"X-CSRFToken": "forged"}
    )
    assert wrong.status_code == 400
    assert client.get("/api/runs").json["data"] == []

    accepted = client.post(
        "/api/workflows/greet/runs", json={"input": {}}, headers={"X-CSRFToken": token}
    )
    assert accepted.status_code == 202, accepted.json
    run_id = accepted.json["id"]
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 400
    canceled = client.post(f"/api/runs/{run_id}/cancel", headers={"X-CSRFToken": token})
    assert canceled.json["status"] == "canceled"

    # The session's role applies as a token's would.
    editing = client.put(
        "/api/workflows/greet", json={"steps": [step()]}, headers={"X-CSRFToken": token}
    )
    assert editing.status_code == 403


def test_a_bearer_token_needs_no_csrf_token(api, greet):
    assert start(api).status_code == 202


# ------------------------------------------------------------------ health, limits, 404s


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    data = response.json
    assert data["database"] == "ok"
    assert data["redis"] == "ok"
    assert isinstance(data["workers"], int) and data["workers"] >= 0


def test_healthz_reports_an_unreachable_redis(client, app):
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    data = response.json
    assert data["database"] == "ok"
    assert data["redis"].startswith("error: ")
    assert data["workers"] == 0


def test_body_over_the_configured_limit_is_413_json(api, app, greet):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    big = {"input": {"text": "x" * 2000}}
    response = api.post("/api/workflows/greet/runs", json=big)
    assert response.status_code == 413
    assert response.json == {"error": "The request body is too large", "details": []}
    definition = {"steps": [step("one", "return '" + "y" * 2000 + "'")]}
    assert api.put("/api/workflows/greet", json=definition).status_code == 413
    assert api.get("/api/runs").json["data"] == []


def test_body_over_two_megabytes_is_413(api, greet):
    response = api.post(
        "/api/workflows/greet/runs", json={"input": {"blob": "z" * (2 * 1024 * 1024 + 10)}}
    )
    assert response.status_code == 413
    assert response.json["error"] == "The request body is too large"


def test_input_over_the_payload_limit_is_413(api, app, greet):
    limit = app.config["MAX_PAYLOAD_BYTES"]
    response = start(api, input={"blob": "z" * (limit + 1)})
    assert response.status_code == 413
    assert response.json["error"].endswith(f"the limit is {limit}")
    assert api.get("/api/runs").json["data"] == []


def test_unknown_api_paths_answer_json(api):
    missing = api.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.is_json
    assert set(missing.json) == {"error", "details"}

    wrong_method = api.delete("/api/runs")
    assert wrong_method.status_code == 405
    assert wrong_method.is_json
    assert set(wrong_method.json) == {"error", "details"}


def test_unknown_pages_outside_the_api_stay_html(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert not response.is_json
    assert "Not Found" in response.get_data(as_text=True)
