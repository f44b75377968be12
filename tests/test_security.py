"""Every route declares its role; pages need login; forms need CSRF; production needs a key."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from console import create_app
from console.auth import create_user

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def test_every_route_declares_a_role(app):
    undeclared = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        if not hasattr(view, "required_role"):
            undeclared.append(f"{rule.rule} ({rule.endpoint})")
    assert not undeclared, f"routes without @role or @public: {undeclared}"


# Pages that only read but need more than viewer, and why.
RESTRICTED_READS = {
    "outbox.index": "emails carry resume and cancel links, which act on runs",
    "accounts.users": "the list of users and their roles is for admins",
    "schedules.edit": "the form to edit a schedule; viewers read schedules on their tab",
    "editor.run_form": "the form that starts a run; viewers cannot start runs",
    "tasks.rerun_dialog": "the Re-run form with its plan; viewers cannot re-run",
    "tasks.recover_form": "the form that uploads a journal; viewers cannot recover",
    "api.list_secrets": "which credentials exist and which workflows use them is for editors",
    "secrets.index": "the Secrets page is for editors, who manage secrets",
    "secrets.confirm_delete": "the confirmation before deleting a secret",
}


def test_state_changing_routes_are_not_get(app):
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if rule.endpoint in RESTRICTED_READS:
            continue
        if getattr(view, "required_role", None) in ("operator", "editor", "admin"):
            assert rule.methods, rule
            # Reading is for viewers; anything needing more than viewer changes state.
            assert "GET" not in rule.methods, f"{rule.rule} changes state on GET"


def test_anonymous_pages_redirect_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_anonymous_api_answers_401_json(client):
    response = client.get("/api/workflows")
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json["error"]


def login_page_token(client):
    html = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def test_login_requires_csrf_and_right_password(app, client):
    create_user("ops@example.com", "operator", "s3cret-pass")
    no_token = client.post("/login", data={"email": "ops@example.com", "password": "s3cret-pass"})
    assert no_token.status_code == 400  # CSRF refused
    token = login_page_token(client)
    wrong = client.post(
        "/login", data={"email": "ops@example.com", "password": "nope", "csrf_token": token}
    )
    assert "Wrong email or password" in wrong.get_data(as_text=True)
    ok = client.post(
        "/login", data={"email": "ops@example.com", "password": "s3cret-pass", "csrf_token": token}
    )
    assert ok.status_code == 302
    page = client.get("/", follow_redirects=True)  # home is the Tasks page
    assert page.status_code == 200
    assert "<h1>Tasks</h1>" in page.get_data(as_text=True)


def test_login_does_not_redirect_off_site(app, client):
    create_user("v@example.com", "viewer", "s3cret-pass")
    token = login_page_token(client)
    response = client.post(
        "/login?next=https://evil.example/x",
        data={"email": "v@example.com", "password": "s3cret-pass", "csrf_token": token},
    )
    assert response.headers["Location"] == "/"


def test_cookie_session_api_posts_need_the_csrf_header(app, client, define):
    create_user("op@example.com", "operator", "s3cret-pass")
    define("wf", [("a", "def run(ctx):\n    return 1")])
    token = login_page_token(client)
    client.post(
        "/login", data={"email": "op@example.com", "password": "s3cret-pass", "csrf_token": token}
    )
    refused = client.post("/api/workflows/wf/runs", json={})
    assert refused.status_code == 400 and "CSRF" in refused.json["error"]
    accepted = client.post("/api/workflows/wf/runs", json={}, headers={"X-CSRFToken": token})
    assert accepted.status_code == 202


def test_production_refuses_a_missing_secret_key(tmp_path):
    env = {
        "CONSOLE_ENV": "production",
        "CONSOLE_INSTANCE_PATH": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-c", "from console import create_app; create_app()"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set in production" in result.stderr


def test_development_generates_and_keeps_a_secret_key(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("CONSOLE_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    first = create_app().config["SECRET_KEY"]
    second = create_app().config["SECRET_KEY"]
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "url,expected",
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
    ],
)
def test_postgres_urls_are_rewritten(monkeypatch, url, expected):
    from console.config import database_url

    monkeypatch.setenv("DATABASE_URL", url)
    assert database_url("/tmp") == expected


def test_tokens_are_stored_hashed(app, make_api):
    from console.extensions import db
    from console.models import ApiToken

    api = make_api("viewer")
    token = api.headers["Authorization"].split()[1]
    row = db.session.scalar(db.select(ApiToken))
    assert token not in (row.token_hash, row.prefix) and row.token_hash == ApiToken.hash(token)
    assert api.get("/api/workflows").status_code == 200


def test_pages_and_answers_are_not_stored_but_static_files_are_cacheable(app, client):
    """A token or password shown once must not stay in a browser's or proxy's cache."""
    from console.auth import create_user
    from tests.support import log_in

    create_user("viewer@example.com", "viewer", "s3cret-pass")
    log_in(client, "viewer@example.com", "s3cret-pass")
    for path in ("/tasks", "/profile", "/login", "/healthz", "/api/workflows"):
        assert client.get(path).headers.get("Cache-Control") == "no-store", path
    static = client.get("/static/console.css")
    static.close()  # a file response: release its file
    assert static.status_code == 200 and static.headers.get("Cache-Control") != "no-store"
