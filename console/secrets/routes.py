"""The Secrets page (editors and admins): list with used-by and last change, add, replace,
delete after a confirmation naming the workflows that use the secret."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth import role
from ..errors import ConsoleError
from ..extensions import htmx
from ..main.forms import EmptyForm
from .forms import SecretForm
from .store import delete_secret, get_secret, list_secrets, set_secret
from .usage import used_by

bp = Blueprint("secrets", __name__)


def _panel(form: SecretForm | None = None, status: int = 200) -> Any:
    template = "secrets/_panel.html" if htmx else "secrets/index.html"
    return (
        render_template(
            template,
            secrets=list_secrets(),
            form=form or SecretForm(formdata=None),
            action=EmptyForm(),
        ),
        status,
    )


def _done() -> Any:
    return _panel() if htmx else redirect(url_for("secrets.index"))


@bp.get("/secrets")
@role("editor")
def index() -> Any:
    return _panel()


@bp.post("/secrets")
@role("editor")
def save() -> Any:
    """Add a secret, or replace the value of one (the row's Replace sends its name)."""
    form = SecretForm()
    if not form.validate():
        return _panel(form, 422)
    try:
        _, created = set_secret(form.name.data, form.value.data, current_user.email)
    except ConsoleError as exc:
        form.value.errors = [exc.message]
        return _panel(form, exc.status)
    flash(f"Secret {form.name.data} {'added' if created else 'replaced'}.", "info")
    return _done()


@bp.get("/secrets/<name>/delete")
@role("editor")
def confirm_delete(name: str) -> Any:
    secret = get_secret(name)
    users = used_by().get(secret.name, [])
    return render_template("secrets/delete.html", secret=secret, users=users, form=EmptyForm())


@bp.post("/secrets/<name>/delete")
@role("editor")
def delete(name: str) -> Any:
    form = EmptyForm()
    if not form.validate():
        return "The form expired; go back and try again.", 400
    delete_secret(name, force=True)  # the confirmation named the workflows using it
    flash(f"Secret {name} deleted.", "info")
    return redirect(url_for("secrets.index"))


@bp.errorhandler(ConsoleError)
def console_error(exc: ConsoleError) -> Any:
    flash(exc.message, "error")
    return (
        redirect(url_for("secrets.index"))
        if request.method == "POST"
        else (exc.message, exc.status)
    )
