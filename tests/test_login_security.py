"""Logins and sessions under attack: failed logins limited per account and per client address
(Flask-Limiter, counted in the real embedded Redis), an unknown email costing a hash like a
wrong password, sessions ended by logout and password changes; and the demo job service
limited per client address."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from console import create_app
from console.auth import create_user, set_active
from console.extensions import db
from console.models import User
from tests.support import csrf_token, log_in, run_sql
from tests.test_processes import flask

PASSWORD = "correct-horse"


def attempt(client: FlaskClient, email: str, password: str, address: str = "10.0.0.1") -> Any:
    """One login through the form, from ``address``."""
    client.environ_base["REMOTE_ADDR"] = address
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def logged_in(client: FlaskClient) -> bool:
    return client.get("/profile").status_code == 200


def other_client(app: Any, email: str, password: str) -> tuple[FlaskClient, str]:
    """Another browser, logged in within an app context of its own (the fixture's pushed
    context would hand it the first client's cached CSRF token)."""
    other = app.test_client()
    with app.app_context():
        token = log_in(other, email, password)
    return other, token


# -------------------------------------------------------------------------- rate limits


def test_thirty_wrong_passwords_lock_the_account_and_the_right_one_is_refused_too(app, client):
    create_user("ops@example.com", "operator", PASSWORD)
    answers = [attempt(client, "ops@example.com", f"guess-{i}") for i in range(30)]
    assert [a.status_code for a in answers[:10]] == [200] * 10
    assert all("Wrong email or password" in a.get_data(as_text=True) for a in answers[:10])
    assert [a.status_code for a in answers[10:]] == [429] * 20
    locked = attempt(client, "ops@example.com", PASSWORD)
    assert locked.status_code == 429
    text = locked.get_data(as_text=True)
    assert "Too many failed logins for this account or from your address" in text
    assert "Try again in 15 minutes" in text
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert not logged_in(client)
    # The account stays locked from any address; other accounts log in from this one.
    assert attempt(app.test_client(), "ops@example.com", PASSWORD, "10.9.9.9").status_code == 429
    create_user("ann@example.com", "viewer", PASSWORD)
    assert attempt(app.test_client(), "ann@example.com", PASSWORD).status_code == 302


def test_failed_logins_from_one_address_lock_that_address_only(app):
    create_user("ann@example.com", "viewer", PASSWORD)
    attacker = app.test_client()
    for i in range(30):  # a few guesses on many accounts, under each account's own limit
        assert attempt(attacker, f"user{i % 6}@example.com", "guess").status_code == 200
    assert attempt(attacker, "ann@example.com", PASSWORD).status_code == 429
    assert not logged_in(attacker)
    assert attempt(app.test_client(), "ann@example.com", PASSWORD, "10.0.0.2").status_code == 302


def test_successful_logins_do_not_count(app):
    create_user("ann@example.com", "viewer", PASSWORD)
    for _ in range(12):
        assert attempt(app.test_client(), "ann@example.com", PASSWORD).status_code == 302


def test_the_limits_are_settings(app, client):
    app.config["LOGIN_RATE_LIMIT_ACCOUNT"] = "2 per minute"
    create_user("ann@example.com", "viewer", PASSWORD)
    assert attempt(client, "ann@example.com", "x").status_code == 200
    assert attempt(client, "ann@example.com", "y").status_code == 200
    refused = attempt(client, "ann@example.com", PASSWORD)
    assert refused.status_code == 429 and "Try again in 1 minute." in refused.get_data(as_text=True)
    with pytest.raises(RuntimeError, match="LOGIN_RATE_LIMIT_ADDRESS must be a rate limit"):
        create_app({"TESTING": True, "LOGIN_RATE_LIMIT_ADDRESS": "lots"})


def test_logins_work_while_redis_is_unreachable(app):
    create_user("ann@example.com", "viewer", PASSWORD)
    db.session.commit()
    down = create_app({"TESTING": True, "REDIS_URL": "redis://127.0.0.1:1/0"})
    try:
        client = down.test_client()
        for _ in range(12):  # nothing is counted, nothing is refused
            assert attempt(client, "ann@example.com", "guess").status_code == 200
        assert attempt(client, "ann@example.com", PASSWORD).status_code == 302
        assert client.get("/profile").status_code == 200
    finally:
        with down.app_context():
            db.engine.dispose()


def test_an_unknown_email_takes_as_long_as_a_wrong_password(app, client):
    """Both cost one password hash, so the time of the answer does not tell which accounts
    exist (before: 3 ms against 70 ms)."""
    create_user("ann@example.com", "viewer", PASSWORD)
    token = csrf_token(client.get("/login").get_data(as_text=True))

    def seconds(email: str) -> float:
        started = time.perf_counter()
        answer = client.post(
            "/login", data={"email": email, "password": "wrong", "csrf_token": token}
        )
        assert answer.status_code == 200
        return time.perf_counter() - started

    known, unknown = [], []
    for i in range(7):  # interleaved, so that load on the machine hits both alike
        known.append(seconds("ann@example.com"))
        unknown.append(seconds(f"nobody{i}@example.com"))
    assert statistics.median(unknown) >= 0.3 * statistics.median(known), (known, unknown)


# ------------------------------------------------------------------------------ sessions


def test_a_cookie_saved_before_logout_opens_nothing_after_it(app, client):
    create_user("ann@example.com", "viewer", PASSWORD)
    token = log_in(client, "ann@example.com", PASSWORD)
    saved = client.get_cookie("session")
    assert saved is not None
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    replay = app.test_client()
    replay.set_cookie("session", saved.value)
    answer = replay.get("/profile")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_logout_ends_the_users_other_sessions(app, client):
    create_user("ann@example.com", "viewer", PASSWORD)
    token = log_in(client, "ann@example.com", PASSWORD)
    other, _ = other_client(app, "ann@example.com", PASSWORD)
    assert logged_in(other)
    client.post("/logout", data={"csrf_token": token})
    assert not logged_in(other)


def test_a_password_change_ends_other_sessions_and_keeps_this_one(app, client):
    create_user("ann@example.com", "viewer", PASSWORD)
    token = log_in(client, "ann@example.com", PASSWORD)
    other, _ = other_client(app, "ann@example.com", PASSWORD)
    changed = client.post(
        "/profile/password",
        data={
            "current": PASSWORD,
            "new": "new-password",
            "confirm": "new-password",
            "csrf_token": token,
        },
    )
    assert changed.status_code == 302
    page = client.get("/profile")  # this session goes on
    assert page.status_code == 200 and "Your password is changed." in page.get_data(as_text=True)
    assert not logged_in(other)
    other_client(app, "ann@example.com", "new-password")


def test_an_admin_password_reset_ends_the_users_sessions(app, client):
    create_user("root@example.com", "admin", PASSWORD)
    ann, _ = create_user("ann@example.com", "viewer", PASSWORD)
    token = log_in(client, "root@example.com", PASSWORD)
    anns, _ = other_client(app, "ann@example.com", PASSWORD)
    assert client.post(f"/users/{ann.id}/password", data={"csrf_token": token}).status_code == 303
    assert not logged_in(anns)
    # Resetting one's own password keeps one's own session.
    root = db.session.scalar(select(User).filter_by(email="root@example.com"))
    db.session.commit()
    assert client.post(f"/users/{root.id}/password", data={"csrf_token": token}).status_code == 303
    assert client.get("/users").status_code == 200


def test_reactivating_a_user_does_not_bring_their_old_sessions_back(app, client):
    ann, _ = create_user("ann@example.com", "viewer", PASSWORD)
    log_in(client, "ann@example.com", PASSWORD)
    set_active(ann, False)
    assert not logged_in(client)
    set_active(ann, True)
    assert not logged_in(client)
    assert attempt(client, "ann@example.com", PASSWORD).status_code == 302


def test_a_session_id_without_a_version_is_refused(app, client):
    """Cookies made before session versions name only the user id: log in again."""
    ann, _ = create_user("ann@example.com", "viewer", PASSWORD)
    with client.session_transaction() as session:
        session["_user_id"] = str(ann.id)
        session["_fresh"] = True
    assert not logged_in(client)


def test_migration_0006_gives_existing_users_session_version_0(app_env):
    assert flask(app_env, "db", "upgrade", "0005").returncode == 0
    run_sql(
        app_env,
        "INSERT INTO users (email, password_hash, role, active, created_at) "
        "VALUES ('old@example.com', 'x', 'viewer', true, '2026-01-01')",
    )
    upgraded = flask(app_env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert run_sql(app_env, "SELECT session_version FROM users") == "[0]"
    downgraded = flask(app_env, "db", "downgrade", "0005")
    assert downgraded.returncode == 0, downgraded.stderr


# ------------------------------------------------------------------------------ the demo


def demo_job(client: FlaskClient, address: str) -> Any:
    return client.post("/demo/jobs", json={"seconds": 0}, environ_base={"REMOTE_ADDR": address})


def test_one_address_using_up_its_demo_jobs_does_not_block_another(app, client):
    app.config["DEMO_RATE_LIMIT_ADDRESS"] = "3 per hour"
    assert [demo_job(client, "10.0.0.1").status_code for _ in range(3)] == [201] * 3
    refused = demo_job(client, "10.0.0.1")
    assert refused.status_code == 429
    assert refused.json == {
        "error": "Too many demo jobs from your address; try again later",
        "details": [],
    }
    assert int(refused.headers["Retry-After"]) > 0
    assert demo_job(client, "10.0.0.2").status_code == 201


def test_the_demo_keeps_a_ceiling_for_everyone(app, client):
    app.config["DEMO_RATE_LIMIT_ADDRESS"] = "3 per hour"
    app.config["DEMO_RATE_LIMIT_TOTAL"] = "5 per hour"
    for _ in range(3):
        assert demo_job(client, "10.0.0.1").status_code == 201
    assert demo_job(client, "10.0.0.1").status_code == 429  # refused: not counted for everyone
    assert demo_job(client, "10.0.0.2").status_code == 201
    assert demo_job(client, "10.0.0.2").status_code == 201
    full = demo_job(client, "10.0.0.3")
    assert full.status_code == 429 and "for everyone" in full.json["error"]


def test_x_forwarded_for_counts_only_when_a_setting_trusts_it(app, client):
    app.config["DEMO_RATE_LIMIT_ADDRESS"] = "1 per hour"

    def forwarded(client: FlaskClient, address: str) -> int:
        headers = {"X-Forwarded-For": address}
        return client.post("/demo/jobs", json={"seconds": 0}, headers=headers).status_code

    # By default the header, which any client can set, changes nothing.
    assert forwarded(client, "10.1.1.1") == 201
    assert forwarded(client, "10.1.1.2") == 429
    proxied = create_app({"TESTING": True, "FORWARDED_PROXIES": 1})
    proxied.config["DEMO_RATE_LIMIT_ADDRESS"] = "1 per hour"
    try:
        behind = proxied.test_client()
        assert forwarded(behind, "10.2.2.1") == 201
        assert forwarded(behind, "10.2.2.1") == 429
        assert forwarded(behind, "10.2.2.2") == 201
    finally:
        with proxied.app_context():
            db.engine.dispose()
