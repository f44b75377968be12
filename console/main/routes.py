from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from rq import Worker
from sqlalchemy import select, text

from ..auth import public, role
from ..errors import NotFound
from ..extensions import db
from ..models import User
from ..queueing import get_redis
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
        user = db.session.scalar(select(User).filter_by(email=form.email.data.strip().lower()))
        if user is None or not user.active or not user.check_password(form.password.data):
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
