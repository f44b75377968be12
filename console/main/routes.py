from __future__ import annotations

from typing import Any

from flask import flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from rq import Worker
from sqlalchemy import text

from ..auth import authenticate, count_failed_login, end_sessions, login_locked, public, role
from ..extensions import db
from ..queueing import get_redis
from ..ratelimit import client_address
from ..web import safe_next
from . import bp
from .forms import EmptyForm, LoginForm


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


@bp.get("/favicon.ico")
@public
def favicon() -> Any:
    """Pages link the SVG icon; this answers the tools that ask for the old path anyway."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)


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
