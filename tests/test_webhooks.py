"""Webhook triggers (docs/links.md#webhooks): ``POST /hooks/<workflow>/<secret>`` as a sending
service sees it, and the webhook URL as editors get and rotate it through the API."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select, update

from console.extensions import db
from console.models import Run, Workflow

from .support import details_by_path

SCHEMA = {
    "type": "object",
    "properties": {"email": {"type": "string", "format": "email"}},
    "required": ["email"],
}
GREET = "def run(ctx):\n    return {'greeted': ctx.input['email']}"


@pytest.fixture
def signup(define: Any) -> Any:
    return define("signup", [("greet", GREET)], input_schema=SCHEMA)


@pytest.fixture
def editor(make_api: Any) -> Any:
    return make_api("editor")


def hook_path(api: Any, name: str = "signup") -> str:
    response = api.get(f"/api/workflows/{name}")
    assert response.status_code == 200, response.json
    url = response.json["webhook_url"]
    assert url.startswith(f"http://console.test/hooks/{name}/")
    return urlsplit(url).path


def run_count() -> int:
    db.session.expire_all()
    count = db.session.scalar(select(func.count()).select_from(Run))
    db.session.commit()
    return int(count or 0)


def test_a_webhook_starts_a_run_that_completes(app, client, signup, editor, api, work):
    path = hook_path(editor)
    response = client.post(path, json={"email": "ada@example.com"})
    assert response.status_code == 202, response.json
    assert set(response.json) == {"id", "status", "url"}
    assert response.json["status"] == "pending"
    run_id = response.json["id"]
    assert response.json["url"] == f"http://console.test/runs/{run_id}"

    work()
    run = api.get(f"/api/runs/{run_id}").json
    assert run["trigger"] == "webhook"
    assert run["input"] == {"email": "ada@example.com"}
    assert run["status"] == "completed"
    assert run["output"] == {"greeted": "ada@example.com"}


def test_the_webhook_url_is_stable_and_its_secret_is_not_stored(app, signup, editor):
    first = hook_path(editor)
    assert hook_path(editor) == first
    secret = first.rsplit("/", 1)[1]
    assert len(secret) >= 43  # 256 bits, urlsafe base64
    db.session.expire_all()
    nonce = db.session.scalar(select(Workflow.webhook_nonce).filter_by(name="signup"))
    assert nonce and secret not in nonce and nonce not in secret


def test_invalid_input_answers_422_with_details(app, client, signup, editor):
    path = hook_path(editor)
    response = client.post(path, json={"email": "not an email", "extra": 1})
    assert response.status_code == 422
    assert response.json["error"] == "The input does not match the workflow's input schema"
    assert "email" in details_by_path(response)["/email"]
    missing = client.post(path, json={})
    assert missing.status_code == 422
    assert "'email' is a required property" in details_by_path(missing)["/"]
    not_an_object = client.post(path, json=["ada@example.com"])
    assert not_an_object.status_code == 422
    assert run_count() == 0


def test_a_body_that_is_not_json_answers_400(app, client, signup, editor):
    path = hook_path(editor)
    response = client.post(path, data="email=ada@example.com", content_type="text/plain")
    assert response.status_code == 400
    assert response.json["error"].startswith("The request body must be JSON")
    assert response.json["details"] == []
    assert client.post(path, data="NaN", content_type="application/json").status_code == 400
    assert run_count() == 0


def test_a_body_over_the_limit_answers_413(app, client, signup, editor):
    path = hook_path(editor)
    limit = app.config["MAX_PAYLOAD_BYTES"]
    body = json.dumps({"email": "ada@example.com", "padding": "x" * limit})
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 413
    assert "limit" in response.json["error"]
    huge = json.dumps({"email": "ada@example.com", "padding": "x" * (3 * limit)})
    assert client.post(path, data=huge, content_type="application/json").status_code == 413
    assert run_count() == 0


def test_a_wrong_secret_or_unknown_workflow_answers_the_same_404(app, client, signup, editor):
    path = hook_path(editor)
    wrong = client.post(path[:-4] + "AAAA", json={"email": "ada@example.com"})
    unknown = client.post(
        "/hooks/no_such_workflow/" + path.rsplit("/", 1)[1], json={"email": "ada@example.com"}
    )
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json == unknown.json == {"error": "No webhook at this URL", "details": []}
    assert client.post("/hooks/signup/", json={}).status_code == 404
    assert run_count() == 0


def test_reading_the_url_never_writes_and_a_workflow_without_a_nonce_has_no_webhook(
    app, client, signup, editor
):
    db.session.expire_all()
    nonce = db.session.scalar(select(Workflow.webhook_nonce).filter_by(name="signup"))
    assert nonce  # made with the workflow, not by the first read
    hook_path(editor)
    db.session.expire_all()
    assert db.session.scalar(select(Workflow.webhook_nonce).filter_by(name="signup")) == nonce

    # A workflow from before nonces were made with it (none since migration 0004).
    db.session.execute(update(Workflow).filter_by(name="signup").values(webhook_nonce=None))
    db.session.commit()
    shown = editor.get("/api/workflows/signup")
    assert shown.status_code == 200 and shown.json["webhook_url"] is None
    db.session.expire_all()
    assert db.session.scalar(select(Workflow.webhook_nonce).filter_by(name="signup")) is None
    response = client.post("/hooks/signup/anything", json={"email": "ada@example.com"})
    assert response.status_code == 404 and run_count() == 0
    assert (
        editor.post("/api/workflows/signup/webhook")
        .json["webhook_url"]
        .startswith("http://console.test/hooks/signup/")
    )


def test_rotating_invalidates_the_old_url(app, client, signup, editor):
    old = hook_path(editor)
    rotated = editor.post("/api/workflows/signup/webhook")
    assert rotated.status_code == 200, rotated.json
    new = urlsplit(rotated.json["webhook_url"]).path
    assert new != old and new.startswith("/hooks/signup/")
    assert hook_path(editor) == new

    assert client.post(old, json={"email": "ada@example.com"}).status_code == 404
    assert run_count() == 0
    assert client.post(new, json={"email": "ada@example.com"}).status_code == 202
    assert run_count() == 1


def test_rotating_an_unknown_workflow_answers_404(app, editor):
    response = editor.post("/api/workflows/nope/webhook")
    assert response.status_code == 404
    assert response.json["error"] == "No workflow named 'nope'"


@pytest.mark.parametrize(
    "role,sees_url", [("viewer", False), ("operator", False), ("editor", True), ("admin", True)]
)
def test_only_editors_see_the_webhook_url(app, signup, make_api, role, sees_url):
    shown = make_api(role).get("/api/workflows/signup")
    assert shown.status_code == 200
    assert ("webhook_url" in shown.json) is sees_url


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_editors_rotate(app, signup, make_api, role):
    response = make_api(role).post("/api/workflows/signup/webhook")
    assert response.status_code == 403
    assert response.json["error"] == f"This needs the editor role; you are {role}"


def test_an_idempotency_key_answers_the_first_run(app, client, signup, editor):
    path = hook_path(editor)
    headers = {"Idempotency-Key": "order-42"}
    first = client.post(path, json={"email": "ada@example.com"}, headers=headers)
    again = client.post(path, json={"email": "ada@example.com"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json["id"] == first.json["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert run_count() == 1


def test_webhooks_need_no_login_or_csrf_but_api_rotation_does(app, client, signup, editor):
    path = hook_path(editor)
    # ``client`` has no session and sends no CSRF token.
    assert client.post(path, json={"email": "ada@example.com"}).status_code == 202
    assert client.post("/api/workflows/signup/webhook").status_code == 401


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_on_a_webhook_answer_405_json(app, client, signup, editor, method):
    response = client.open(hook_path(editor), method=method)
    assert response.status_code == 405
    assert response.is_json and response.json["details"] == []
    assert "not allowed" in response.json["error"]


def test_a_rotated_secret_key_kept_as_a_fallback_keeps_the_old_url(
    app, client, signup, editor, monkeypatch
):
    old = hook_path(editor)
    old_key = app.config["SECRET_KEY"]
    monkeypatch.setitem(app.config, "SECRET_KEY", "a-brand-new-secret-key")
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [old_key])
    new = hook_path(editor)
    assert new != old  # the URL shown now is made with the new key
    for path in (old, new):
        assert client.post(path, json={"email": "ada@example.com"}).status_code == 202
    assert run_count() == 2
    # Once the old key is dropped, its URL stops working.
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [])
    assert client.post(old, json={"email": "ada@example.com"}).status_code == 404
    assert client.post(new, json={"email": "ada@example.com"}).status_code == 202
    assert run_count() == 3
