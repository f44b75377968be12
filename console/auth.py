"""Authentication (session cookie or ``Authorization: Bearer``) and roles per route.

Every view declares its role with ``@role("viewer" | "operator" | "editor" | "admin")`` or
``@public``; a test walks the URL map and fails for a view that declares neither.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, g, jsonify, redirect, request, url_for
from flask_login import current_user
from sqlalchemy import select, update
from werkzeug.security import check_password_hash, generate_password_hash

from . import ratelimit
from .extensions import db, login_manager, write_transaction
from .models import ROLES, ApiToken, User
from .timeutil import utcnow

F = TypeVar("F", bound=Callable[..., Any])
TOKEN_PREFIX = "wfc_"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")


def init_app(app: Flask) -> None:
    login_manager.login_view = "main.login"
    login_manager.login_message = "Please log in to continue."


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user of a session id ``"<user id>:<session version>"`` (``User.get_id``), while
    that version is current and the user active."""
    user_id, _, version = session_id.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None  # a cookie from before session versions: log in again
    user = db.session.get(User, int(user_id))
    if user is None or not user.active or user.session_version != int(version):
        return None
    return user


@login_manager.request_loader
def load_user_from_token(req: Any) -> User | None:
    header = req.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    token = header[len("Bearer ") :].strip()
    row = db.session.scalar(select(ApiToken).filter_by(token_hash=ApiToken.hash(token)))
    if row is None or row.revoked_at is not None or not row.user.active:
        g.bad_token = True
        return None
    g.token_auth = True
    user = row.user
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        # A separate write transaction: on SQLite, upgrading this read one could fail
        # under concurrent requests instead of waiting.
        token_id = row.id
        write_transaction()
        db.session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
        db.session.commit()
    return user


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _unauthorised() -> Any:
    if wants_json():
        message = (
            "Invalid or revoked API token"
            if g.get("bad_token")
            else "Authentication required: send Authorization: Bearer <token>"
        )
        return jsonify(error=message, details=[]), 401
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("main.login", next=target))


def role(name: str) -> Callable[[F], F]:
    if name not in ROLES:
        raise ValueError(f"unknown role {name!r}")

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return _unauthorised()
            if not current_user.has_role(name):
                message = f"This needs the {name} role; you are {current_user.role}"
                if wants_json():
                    return jsonify(error=message, details=[]), 403
                return message, 403
            return view(*args, **kwargs)

        wrapper.required_role = name  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def public(view: F) -> F:
    """Reachable without login (login page, health check, token- or secret-bearing links)."""
    view.required_role = None  # type: ignore[attr-defined]
    return view


def create_user(
    email: str, role_name: str = "viewer", password: str | None = None
) -> tuple[User, str]:
    if role_name not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    email = email.strip().lower()
    # The login form takes "name@host" (admin@localhost included); refuse what it cannot.
    if not EMAIL_RE.match(email) or len(email) > 254:
        raise ValueError(f"{email!r} is not an email address (name@example.com)")
    write_transaction()  # the check and the insert under one write lock
    if db.session.scalar(select(User).filter_by(email=email)) is not None:
        db.session.rollback()
        raise ValueError(f"a user with email {email} already exists")
    password = password or secrets.token_urlsafe(12)
    user = User(email=email, role=role_name)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user, password


def create_token(user: User, name: str = "") -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    write_transaction()
    db.session.add(
        ApiToken(user=user, name=name, prefix=token[:12], token_hash=ApiToken.hash(token))
    )
    db.session.commit()
    return token


# ---------------------------------------------------------------------------- logging in

# An unknown email costs the same one hash as a wrong password, so the time of the answer does
# not tell which accounts exist.
_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16))


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, else None, after exactly one hash."""
    user = db.session.scalar(select(User).filter_by(email=email.strip().lower()))
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not user.check_password(password) or not user.active:
        return None
    return user


def _login_keys(email: str, address: str) -> dict[str, str]:
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return {
        "LOGIN_RATE_LIMIT_ACCOUNT": f"login/account/{account}",
        "LOGIN_RATE_LIMIT_ADDRESS": f"login/address/{address}",
    }


def login_locked(email: str, address: str) -> int | None:
    """Seconds until a login to this account from this address is tried again, or None when it
    can be tried now (failed logins count per account and per address, ``LOGIN_RATE_LIMIT_*``).
    """
    return ratelimit.retry_after(_login_keys(email, address))


def count_failed_login(email: str, address: str) -> None:
    ratelimit.count_failure(_login_keys(email, address))


def end_sessions(user: User) -> None:
    """End every session of the user (the cookie of each names the old session version);
    the caller logs the current one in again if it is to stay."""
    write_transaction()
    db.session.execute(
        update(User).where(User.id == user.id).values(session_version=User.session_version + 1)
    )
    db.session.commit()


# ------------------------------------------------------------------ managing accounts
#
# The users and profile pages call these; each takes the write lock first (SQLite) or locks
# the admins' rows (PostgreSQL), so two admins demoting each other at once cannot leave the
# console without an active admin. On SQLite a transaction that reads and then writes without
# that lock fails with "database is locked" when another process wrote in between.

MIN_PASSWORD_LENGTH = 8


class AccountError(ValueError):
    """A refused account change, with a message for the person who asked for it."""


def _lock_admins() -> int:
    """The number of active admins, counted under a lock held until the commit (inside a
    write transaction)."""
    query = select(User.id).filter_by(role="admin", active=True)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return len(db.session.scalars(query).all())


def _keep_an_admin(user: User, role_name: str, active: bool) -> None:
    """Start the change's write transaction; refuse one that leaves no active admin."""
    write_transaction()
    if role_name == "admin" and active:
        return
    admins = _lock_admins()  # the user's row is read again under the lock
    if user.role == "admin" and user.active and admins <= 1:
        db.session.rollback()
        raise AccountError(f"{user.email} is the last active admin: make another user admin first")


def set_role(user: User, role_name: str) -> None:
    if role_name not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    _keep_an_admin(user, role_name, user.active)
    user.role = role_name
    db.session.commit()


def set_active(user: User, active: bool) -> None:
    """Deactivate (their sessions and API tokens stop working at once) or reactivate."""
    _keep_an_admin(user, user.role, active)
    user.active = active
    if not active:  # reactivating must not bring the sessions of before back
        user.session_version = User.session_version + 1
    db.session.commit()


def reset_password(user: User) -> str:
    """Give the user a new generated password (ending their sessions); returns it (shown
    once, stored hashed)."""
    password = secrets.token_urlsafe(12)
    write_transaction()
    user.set_password(password)
    user.session_version = User.session_version + 1
    db.session.commit()
    return password


def change_password(user: User, current: str, new: str) -> None:
    if not user.check_password(current):
        raise AccountError("The current password is wrong.")
    if len(new) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"The new password needs at least {MIN_PASSWORD_LENGTH} characters.")
    write_transaction()
    user.set_password(new)
    # Other sessions end; the view logs the current one in again with the new version.
    user.session_version = User.session_version + 1
    db.session.commit()


def revoke_token(user: User, token_id: int) -> ApiToken:
    """Revoke one of the user's tokens (revoking a revoked token changes nothing)."""
    write_transaction()
    token = db.session.scalar(select(ApiToken).filter_by(id=token_id, user_id=user.id))
    if token is None:
        db.session.rollback()
        raise AccountError("No such token.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    db.session.commit()
    return token
