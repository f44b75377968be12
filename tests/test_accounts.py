"""Accounts: the users page (admins) and the profile page with API tokens, through the real
login, the real forms with their CSRF tokens, and the real API authentication."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from console.auth import create_token, create_user, revoke_token, set_active
from console.extensions import db
from console.models import ApiToken, User
from tests.conftest import browser_log_in, screenshot
from tests.support import csrf_token, log_in

PASSWORD = "correct-horse"


def user_named(email: str) -> User:
    db.session.expire_all()
    user = db.session.scalar(select(User).filter_by(email=email))
    db.session.commit()
    assert user is not None
    return user


def shown_secret(html: str) -> str:
    match = re.search(r'<code class="secret-value" id="secret-value">([^<]+)</code>', html)
    assert match, html[:3000]
    return match.group(1)


def second_client(app: Any, email: str, password: str) -> tuple[Any, str]:
    """Another browser: a new client, logged in within an app context of its own (the ``app``
    fixture's pushed context would otherwise hand it the first client's cached CSRF token)."""
    other = app.test_client()
    with app.app_context():
        token = log_in(other, email, password)
    return other, token


@pytest.fixture
def admin(app: Any, auth: Any) -> str:
    """An admin logged in with the test client; returns the session's CSRF token."""
    return auth.login("admin", "root@example.com", PASSWORD)


def test_admin_creates_users_with_a_given_or_a_generated_password(app, client, admin) -> None:
    page = client.get("/users")
    assert page.status_code == 200
    assert "root@example.com" in page.get_data(as_text=True)

    given = client.post(
        "/users",
        data={
            "email": "Ed@Example.com",
            "role": "editor",
            "password": "ed-password",
            "csrf_token": admin,
        },
    )
    assert given.status_code == 302
    assert user_named("ed@example.com").role == "editor"

    generated = client.post(
        "/users", data={"email": "op@example.com", "role": "operator", "csrf_token": admin}
    )
    # Answered with a redirect: reloading the page that shows the password never posts again.
    assert generated.status_code == 303 and generated.location.endswith("/users")
    password = shown_secret(client.get("/users").get_data(as_text=True))
    assert user_named("op@example.com").check_password(password)
    # Shown once: a reload does not show it again, and only its hash is stored.
    assert password not in client.get("/users").get_data(as_text=True)
    assert password not in user_named("op@example.com").password_hash

    other, _ = second_client(app, "op@example.com", password)
    assert other.get("/tasks").status_code == 200

    duplicate = client.post(
        "/users", data={"email": "op@example.com", "role": "viewer", "csrf_token": admin}
    )
    assert duplicate.status_code == 422
    assert "already exists" in duplicate.get_data(as_text=True)
    short = client.post(
        "/users",
        data={"email": "x@example.com", "role": "viewer", "password": "short", "csrf_token": admin},
    )
    assert short.status_code == 422 and "at least 8" in short.get_data(as_text=True)


def test_admin_changes_roles_deactivates_reactivates_and_resets_passwords(
    app, client, admin
) -> None:
    create_user("ann@example.com", "viewer", PASSWORD)
    ann = user_named("ann@example.com")
    ann_client, _ = second_client(app, "ann@example.com", PASSWORD)
    ann_token = create_token(ann, "ann's script")

    assert (
        client.post(
            f"/users/{ann.id}/role", data={"role": "editor", "csrf_token": admin}
        ).status_code
        == 302
    )
    assert user_named("ann@example.com").role == "editor"

    assert client.post(f"/users/{ann.id}/deactivate", data={"csrf_token": admin}).status_code == 302
    assert user_named("ann@example.com").active is False
    # Deactivated: the session and the API token stop working at once, and login is refused.
    assert ann_client.get("/tasks").status_code == 302
    bearer = {"Authorization": f"Bearer {ann_token}"}
    assert app.test_client().get("/api/workflows", headers=bearer).status_code == 401
    page = client.get("/users").get_data(as_text=True)
    assert "deactivated" in page and "Reactivate" in page

    assert client.post(f"/users/{ann.id}/reactivate", data={"csrf_token": admin}).status_code == 302
    assert user_named("ann@example.com").active is True
    assert app.test_client().get("/api/workflows", headers=bearer).status_code == 200

    reset = client.post(f"/users/{ann.id}/password", data={"csrf_token": admin})
    assert reset.status_code == 303
    new_password = shown_secret(client.get("/users").get_data(as_text=True))
    assert not user_named("ann@example.com").check_password(PASSWORD)
    second_client(app, "ann@example.com", new_password)

    assert (
        client.post("/users/9999/role", data={"role": "admin", "csrf_token": admin}).status_code
        == 404
    )


def test_the_last_active_admin_cannot_be_demoted_or_deactivated(app, client, admin) -> None:
    root = user_named("root@example.com")
    for path, data in (
        (f"/users/{root.id}/role", {"role": "editor"}),
        (f"/users/{root.id}/deactivate", {}),
    ):
        answer = client.post(path, data={**data, "csrf_token": admin}, follow_redirects=True)
        assert "last active admin" in answer.get_data(as_text=True)
        assert user_named("root@example.com").role == "admin"
        assert user_named("root@example.com").active is True

    # With a second active admin, the first may step down; then the second is the last one.
    create_user("second@example.com", "admin", PASSWORD)
    second = user_named("second@example.com")
    client.post(f"/users/{root.id}/role", data={"role": "editor", "csrf_token": admin})
    assert user_named("root@example.com").role == "editor"
    other, token = second_client(app, "second@example.com", PASSWORD)
    answer = other.post(
        f"/users/{second.id}/deactivate", data={"csrf_token": token}, follow_redirects=True
    )
    assert "last active admin" in answer.get_data(as_text=True)
    # A deactivated admin does not count.
    other.post(f"/users/{root.id}/role", data={"role": "admin", "csrf_token": token})
    other.post(f"/users/{root.id}/deactivate", data={"csrf_token": token})
    answer = other.post(
        f"/users/{second.id}/role",
        data={"role": "viewer", "csrf_token": token},
        follow_redirects=True,
    )
    assert "last active admin" in answer.get_data(as_text=True)
    assert user_named("second@example.com").role == "admin"


@pytest.mark.parametrize("role", ["viewer", "operator", "editor"])
def test_non_admins_get_403_on_every_users_route(app, client, auth, role) -> None:
    token = auth.login(role, "someone@example.com", PASSWORD)
    target = user_named("someone@example.com")
    assert client.get("/users").status_code == 403
    for path, data in (
        ("/users", {"email": "new@example.com", "role": "admin"}),
        (f"/users/{target.id}/role", {"role": "admin"}),
        (f"/users/{target.id}/deactivate", {}),
        (f"/users/{target.id}/reactivate", {}),
        (f"/users/{target.id}/password", {}),
        (f"/users/{target.id}/tokens/1/revoke", {}),
    ):
        assert client.post(path, data={**data, "csrf_token": token}).status_code == 403, path
    assert user_named("someone@example.com").role == role
    assert client.get("/profile").status_code == 200  # their own profile is theirs


def test_anonymous_users_are_sent_to_login(client, app) -> None:
    for path in ("/users", "/profile"):
        answer = client.get(path)
        assert answer.status_code == 302 and "/login" in answer.headers["Location"], path
    for path in ("/users", "/profile/password", "/profile/tokens", "/users/1/deactivate"):
        answer = client.post(path)
        # Without a session there is no CSRF token: refused before anything else.
        assert answer.status_code == 400, path


def test_a_token_made_on_the_profile_page_works_until_revoked(app, client, auth) -> None:
    csrf = auth.login("operator", "dev@example.com", PASSWORD)
    made = client.post("/profile/tokens", data={"name": "deploy script", "csrf_token": csrf})
    assert made.status_code == 303 and made.location.endswith("/profile")
    html = client.get("/profile").get_data(as_text=True)
    token = shown_secret(html)
    assert token.startswith("wfc_")
    assert f"Authorization: Bearer {token}" in html.replace("&#34;", '"').replace("&quot;", '"')
    assert "Copy" in html

    api = app.test_client()
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/workflows", headers=bearer).status_code == 200

    profile = client.get("/profile").get_data(as_text=True)
    assert "deploy script" in profile and token[:12] in profile and token not in profile
    stored = db.session.scalar(select(ApiToken).filter_by(name="deploy script"))
    assert stored.token_hash == ApiToken.hash(token) and stored.last_used_at is not None

    revoked = client.post(f"/profile/tokens/{stored.id}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 302
    assert api.get("/api/workflows", headers=bearer).status_code == 401
    assert "revoked" in client.get("/profile").get_data(as_text=True)

    # Someone else's token cannot be revoked from your profile.
    create_user("eve@example.com", "viewer", PASSWORD)
    other_token = create_token(user_named("eve@example.com"), "eve's")
    theirs = db.session.scalar(select(ApiToken).filter_by(name="eve's"))
    assert (
        client.post(f"/profile/tokens/{theirs.id}/revoke", data={"csrf_token": csrf}).status_code
        == 404
    )
    assert (
        api.get("/api/workflows", headers={"Authorization": f"Bearer {other_token}"}).status_code
        == 200
    )

    assert client.post("/profile/tokens", data={"name": "", "csrf_token": csrf}).status_code == 422


def test_a_secret_crosses_its_redirect_split_and_once(app, client, auth, redis_conn) -> None:
    """The redirect after a POST carries a token in two halves (a pad in the session, the
    token XOR the pad in Redis) that the next page joins once; without Redis the POST's own
    answer shows it."""
    csrf = auth.login("operator", "dev@example.com", PASSWORD)
    assert client.post("/profile/tokens", data={"name": "a", "csrf_token": csrf}).status_code == 303
    with client.session_transaction() as held:
        half = held["shown_once"]
    (key,) = redis_conn.keys("console:shown-once:*")
    assert 0 < redis_conn.ttl(key) <= 300
    cipher = redis_conn.get(key)
    token = shown_secret(client.get("/profile").get_data(as_text=True))
    assert token.startswith("wfc_") and len(cipher) == len(token)
    assert token.encode() not in cipher and token not in str(half)
    pad = bytes.fromhex(half["pad"])
    assert bytes(a ^ b for a, b in zip(cipher, pad, strict=True)) == token.encode()
    # Joined once: both halves are gone, a reload shows no secret.
    assert redis_conn.keys("console:shown-once:*") == []
    with client.session_transaction() as held:
        assert "shown_once" not in held
    assert 'id="secret-value"' not in client.get("/profile").get_data(as_text=True)

    # Redis unreachable: the token is still shown, by the POST's answer.
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    made = client.post("/profile/tokens", data={"name": "b", "csrf_token": csrf})
    assert made.status_code == 201
    assert shown_secret(made.get_data(as_text=True)).startswith("wfc_")


def test_admins_see_and_revoke_the_tokens_of_every_user(app, client, admin) -> None:
    create_user("dev@example.com", "operator", PASSWORD)
    dev = user_named("dev@example.com")
    secret = create_token(dev, "laptop")
    kept = create_token(dev, "ci")
    gone = create_token(dev, "old")
    revoke_token(dev, db.session.scalar(select(ApiToken.id).filter_by(name="old")))
    page = client.get("/users").get_data(as_text=True)
    entry = page[page.index(f'id="user-{dev.id}"') :]
    entry = entry.split('<li class="user', 1)[0]  # up to the next user (root@…)
    assert "API tokens <small>(2 active)</small>" in entry
    assert secret[:12] in entry and kept[:12] in entry and gone[:12] not in entry
    assert secret not in page  # only the prefix is shown
    assert "No active API tokens." in page  # the admin has none

    laptop = db.session.scalar(select(ApiToken.id).filter_by(name="laptop"))
    api = app.test_client()
    assert api.get("/api/runs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    answer = client.post(f"/users/{dev.id}/tokens/{laptop}/revoke", data={"csrf_token": admin})
    assert answer.status_code == 302
    assert "of dev@example.com is revoked" in client.get("/users").get_data(as_text=True)
    assert api.get("/api/runs", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert api.get("/api/runs", headers={"Authorization": f"Bearer {kept}"}).status_code == 200
    # A token is revoked only through its owner's entry.
    root = user_named("root@example.com")
    ci = db.session.scalar(select(ApiToken.id).filter_by(name="ci"))
    wrong = client.post(f"/users/{root.id}/tokens/{ci}/revoke", data={"csrf_token": admin})
    assert wrong.status_code == 404
    assert client.post(f"/users/{dev.id}/tokens/{ci}/revoke").status_code == 400  # no CSRF
    assert api.get("/api/runs", headers={"Authorization": f"Bearer {kept}"}).status_code == 200


def test_changing_the_password_needs_the_current_one(app, client, auth) -> None:
    csrf = auth.login("viewer", "dev@example.com", PASSWORD)
    wrong = client.post(
        "/profile/password",
        data={
            "current": "not-it",
            "new": "new-password",
            "confirm": "new-password",
            "csrf_token": csrf,
        },
    )
    assert wrong.status_code == 422
    assert "current password is wrong" in wrong.get_data(as_text=True)
    mismatch = client.post(
        "/profile/password",
        data={"current": PASSWORD, "new": "new-password", "confirm": "other", "csrf_token": csrf},
    )
    assert mismatch.status_code == 422 and "differ" in mismatch.get_data(as_text=True)
    assert user_named("dev@example.com").check_password(PASSWORD)

    done = client.post(
        "/profile/password",
        data={
            "current": PASSWORD,
            "new": "new-password",
            "confirm": "new-password",
            "csrf_token": csrf,
        },
    )
    assert done.status_code == 302
    assert user_named("dev@example.com").check_password("new-password")
    second_client(app, "dev@example.com", "new-password")


def test_forms_without_a_csrf_token_are_refused(app, client, admin) -> None:
    create_user("ann@example.com", "viewer", PASSWORD)
    ann = user_named("ann@example.com")
    for path, data in (
        ("/users", {"email": "new@example.com", "role": "admin", "password": "long-enough"}),
        (f"/users/{ann.id}/role", {"role": "admin"}),
        (f"/users/{ann.id}/deactivate", {}),
        (f"/users/{ann.id}/password", {}),
        ("/profile/tokens", {"name": "x"}),
        (
            "/profile/password",
            {"current": PASSWORD, "new": "new-password", "confirm": "new-password"},
        ),
    ):
        assert client.post(path, data=data).status_code == 400, path
        assert client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400, path
    ann = user_named("ann@example.com")
    assert ann.role == "viewer" and ann.active
    assert user_named("root@example.com").check_password(PASSWORD)
    assert db.session.scalar(select(User).filter_by(email="new@example.com")) is None
    assert db.session.scalars(select(ApiToken)).all() == []
    # The pages carry the token in every form.
    page = client.get("/users").get_data(as_text=True)
    assert page.count('name="csrf_token"') >= 4 and csrf_token(page)


def assert_fits(page: Any, width: int) -> None:
    """Nothing in the page's content is wider than the window (no sideways scrolling)."""
    wide = page.evaluate(
        """(width) => [...document.querySelectorAll('main *')]
            .filter((e) => e.getBoundingClientRect().right > width + 1)
            .map((e) => e.tagName + '.' + e.className)""",
        width,
    )
    assert wide == [], f"wider than {width} px: {wide}"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.sqlite_only
def test_screenshots_of_the_users_and_profile_pages(app, live, page) -> None:
    create_user("admin@example.com", "admin", PASSWORD)
    create_user("editor@example.com", "editor", PASSWORD)
    create_user("a-rather-long-address.for-wrapping@subdomain.example.com", "viewer", PASSWORD)
    create_token(user_named("editor@example.com"), "deploy")
    gone, _ = create_user("former@example.com", "operator", PASSWORD)
    set_active(gone, False)  # under the write lock: the live stack writes to the same SQLite
    browser_log_in(page, live.base, "admin@example.com", PASSWORD)

    page.goto(live.url("/users"))
    page.get_by_label("Email", exact=True).fill("new@example.com")
    page.get_by_label("Role", exact=True).select_option("operator")
    page.get_by_role("button", name="Create user").click()
    assert page.locator("#secret-value").inner_text().strip()
    page.wait_for_load_state()
    page.locator("details.user-tokens summary").click()  # the editor's tokens, opened
    expect(page.get_by_role("button", name="Revoke the token deploy (")).to_be_visible()
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        assert_fits(page, width)
        screenshot(page, f"accounts-users-{width}")

    page.goto(live.url("/profile"))
    page.get_by_label("Token name").fill("deploy script")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#secret-value").inner_text().strip()
    assert token.startswith("wfc_")
    # A reload asks nothing and creates nothing: the secret was shown once.
    page.reload()
    assert page.locator("#secret-value").count() == 0
    revoke = page.get_by_role("button", name=re.compile("Revoke the token deploy script"))
    assert revoke.count() == 1
    # Each form posts and redirects: wait for the page it leads to before the next action
    # (a click on the old page would race the navigation).
    page.get_by_label("Token name").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    page.locator("#secret-value").wait_for()
    revoke.click()
    page.get_by_text("is revoked").wait_for()
    page.get_by_label("Token name").fill("ci")
    page.get_by_role("button", name="Create token").click()
    page.locator("#secret-value").wait_for()
    page.wait_for_load_state()
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        assert_fits(page, width)
        screenshot(page, f"accounts-profile-{width}")


@pytest.mark.sqlite_only
def test_account_changes_take_the_write_lock_before_they_read(app) -> None:
    """On SQLite a transaction that reads and then writes fails with "database is locked" when
    another process wrote in between (its snapshot is stale). Each account change starts with
    the write lock, so a worker or scheduler writing meanwhile cannot make it fail."""
    from sqlalchemy import update

    from console.auth import reset_password, set_role
    from console.timeutil import utcnow

    create_user("root@example.com", "admin", PASSWORD)
    create_user("ann@example.com", "viewer", PASSWORD)
    ann = user_named("ann@example.com")

    def another_process_writes() -> None:
        with db.engine.connect() as other:
            other.execute(
                update(User).where(User.email == "root@example.com").values(created_at=utcnow())
            )
            other.commit()

    changes = {
        "create_user": lambda: create_user("bo@example.com", "operator"),
        "create_token": lambda: create_token(ann, "x"),
        "set_role": lambda: set_role(ann, "editor"),
        "set_role admin": lambda: set_role(ann, "admin"),
        "set_active": lambda: set_active(ann, False),
        "reactivate": lambda: set_active(ann, True),
        "reset_password": lambda: reset_password(ann),
        "revoke_token": lambda: revoke_token(ann, ann.tokens[0].id),
    }
    for name, change in changes.items():
        assert ann.email == "ann@example.com"  # a read: the session's snapshot begins
        another_process_writes()
        change()  # raised OperationalError("database is locked") before
        db.session.commit()
        assert name and user_named("ann@example.com")
    assert user_named("ann@example.com").role == "admin"
