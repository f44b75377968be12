from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from rq import Worker
from sqlalchemy import text

from ..auth import authenticate, count_failed_login, end_sessions, login_locked, public, role
from ..errors import NotFound
from ..extensions import db
from ..queueing import get_redis
from ..ratelimit import client_address
from . import bp
from .forms import EmptyForm, LoginForm


def safe_next(target: str | None) -> str:
    if not target:
        return url_for("main.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/"):
        return url_for("main.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if form.validate_on_submit():
        email, address = form.email.data, client_address()
        wait = login_locked(email, address)
        if wait is not None:
            minutes = -(-wait // 60)
            message = (
                "Too many failed logins for this account or from your address. "
                f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
            )
            flash(message, "error")
            return render_template("main/login.html", form=form), 429, {"Retry-After": str(wait)}
        user = authenticate(email, form.password.data)
        if user is None:
            count_failed_login(email, address)
            flash("Wrong email or password.", "error")
        else:
            login_user(user)
            return redirect(safe_next(request.args.get("next")))
    return render_template("main/login.html", form=form), 200


@bp.post("/logout")
@role("viewer")
def logout() -> Any:
    form = EmptyForm()
    if form.validate_on_submit():
        end_sessions(current_user)  # a saved copy of this cookie (and every other) ends too
        logout_user()
    return redirect(url_for("main.login"))


@bp.get("/")
@role("viewer")
def index() -> Any:
    return redirect(url_for("tasks.index"))


@bp.get("/runs/<run_id>")
@role("viewer")
def run_page(run_id: str) -> Any:
    """One run's whole story; its live section updates itself until the run ends."""
    from ..tasks import queries

    try:
        story = queries.run_story(run_id)
    except NotFound:
        abort(404)
    return render_template("main/run.html", **story)


@bp.get("/runs/<run_id>/live")
@role("viewer")
def run_live(run_id: str) -> Any:
    """The run page's poll: 204 while nothing changed (one primary-key read), else the
    fresh live section."""
    from ..tasks import queries

    current = queries.run_stamp(run_id)
    if current is None:
        abort(404)
    if current == request.args.get("stamp"):
        return "", 204
    return render_template("main/_run_live.html", **queries.run_story(run_id))


@bp.get("/healthz")
@public
def healthz() -> Any:
    status: dict[str, Any] = {}
    ok = True
    try:
        db.session.execute(text("SELECT 1"))
        status["database"] = "ok"
    except Exception as exc:
        status["database"], ok = f"error: {type(exc).__name__}", False
    try:
        conn = get_redis()
        conn.ping()
        status["redis"] = "ok"
        status["workers"] = Worker.count(connection=conn)
    except Exception as exc:
        status["redis"], status["workers"], ok = f"error: {type(exc).__name__}", 0, False
    return jsonify(status), 200 if ok else 503
