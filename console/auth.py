"""Authentication (session cookie or ``Authorization: Bearer``) and roles per route.

Every view declares its role with ``@role("viewer" | "operator" | "editor" | "admin")`` or
``@public``; a test walks the URL map and fails for a view that declares neither.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, g, jsonify, redirect, request, url_for
from flask_login import current_user
from sqlalchemy import select, update

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
def load_user(user_id: str) -> User | None:
    user = db.session.get(User, int(user_id))
    return user if user is not None and user.active else None


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
    if db.session.scalar(select(User).filter_by(email=email)) is not None:
        raise ValueError(f"a user with email {email} already exists")
    password = password or secrets.token_urlsafe(12)
    user = User(email=email, role=role_name)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user, password


def create_token(user: User, name: str = "") -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.session.add(
        ApiToken(user=user, name=name, prefix=token[:12], token_hash=ApiToken.hash(token))
    )
    db.session.commit()
    return token
