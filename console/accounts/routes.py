"""The users page (admins) and the profile page (everyone logged in).

Views stay thin: the account changes themselves, and the refusals (the last active admin, a
wrong current password), live in ``console.auth``. A new password or token is shown once, in
the answer to the POST that made it, and is never stored in the clear.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_user
from sqlalchemy import select

from ..auth import (
    AccountError,
    change_password,
    create_token,
    create_user,
    reset_password,
    revoke_token,
    role,
    set_active,
    set_role,
)
from ..extensions import db
from ..main.forms import EmptyForm
from ..models import ApiToken, User
from . import bp, shown_once
from .forms import CreateUserForm, PasswordForm, RoleForm, TokenForm


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def users_page(form: CreateUserForm | None = None, secret: dict[str, str] | None = None) -> Any:
    users = db.session.scalars(select(User).order_by(User.email)).all()
    tokens: dict[int, list[ApiToken]] = {}
    active = select(ApiToken).where(ApiToken.revoked_at.is_(None)).order_by(ApiToken.id.desc())
    for token in db.session.scalars(active):
        tokens.setdefault(token.user_id, []).append(token)
    return render_template(
        "accounts/users.html",
        users=users,
        tokens=tokens,
        form=form or CreateUserForm(formdata=None),
        role_forms={u.id: RoleForm(formdata=None, role=u.role) for u in users},
        action_form=EmptyForm(formdata=None),
        secret=secret,
    )


@bp.get("/users")
@role("admin")
def users() -> Any:
    return users_page(secret=shown_once.take("password"))


def show_password(email: str, password: str) -> Any:
    """Redirect to the users page that shows the new password once (see ``shown_once``)."""
    if shown_once.keep("password", password, {"for": email}):
        return redirect(url_for("accounts.users"), 303)
    return users_page(secret={"for": email, "value": password})


@bp.post("/users")
@role("admin")
def create() -> Any:
    form = CreateUserForm()
    if not form.validate_on_submit():
        return users_page(form), 422
    try:
        user, password = create_user(form.email.data, form.role.data, form.password.data or None)
    except ValueError as exc:
        form.email.errors = [str(exc)]
        return users_page(form), 422
    if form.password.data:
        flash(f"Created {user.email} ({user.role}).")
        return redirect(url_for("accounts.users"))
    return show_password(user.email, password)


@bp.post("/users/<int:user_id>/role")
@role("admin")
def change_role(user_id: int) -> Any:
    user = get_user(user_id)
    form = RoleForm()
    if form.validate_on_submit():
        try:
            set_role(user, form.role.data)
            flash(f"{user.email} is now {user.role}.")
        except AccountError as exc:
            flash(str(exc), "error")
    return redirect(url_for("accounts.users"))


def _set_active(user_id: int, active: bool) -> Any:
    user = get_user(user_id)
    if EmptyForm().validate_on_submit():
        try:
            set_active(user, active)
            flash(f"{user.email} is {'active again' if active else 'deactivated'}.")
        except AccountError as exc:
            flash(str(exc), "error")
    return redirect(url_for("accounts.users"))


@bp.post("/users/<int:user_id>/deactivate")
@role("admin")
def deactivate(user_id: int) -> Any:
    return _set_active(user_id, False)


@bp.post("/users/<int:user_id>/reactivate")
@role("admin")
def reactivate(user_id: int) -> Any:
    return _set_active(user_id, True)


@bp.post("/users/<int:user_id>/password")
@role("admin")
def reset(user_id: int) -> Any:
    user = get_user(user_id)
    if not EmptyForm().validate_on_submit():
        return redirect(url_for("accounts.users"))
    password = reset_password(user)
    if user.id == current_user.id:
        login_user(user)  # an admin resetting their own password stays logged in here
    return show_password(user.email, password)


@bp.post("/users/<int:user_id>/tokens/<int:token_id>/revoke")
@role("admin")
def revoke_user_token(user_id: int, token_id: int) -> Any:
    user = get_user(user_id)
    if EmptyForm().validate_on_submit():
        try:
            token = revoke_token(user, token_id)
        except AccountError:
            abort(404)
        flash(f"Token “{token.name}” ({token.prefix}…) of {user.email} is revoked.")
    return redirect(url_for("accounts.users"))


# ------------------------------------------------------------------------------ profile


def profile_page(
    password_form: PasswordForm | None = None,
    token_form: TokenForm | None = None,
    new_token: str | None = None,
) -> Any:
    tokens = db.session.scalars(
        select(ApiToken).filter_by(user_id=current_user.id).order_by(ApiToken.id.desc())
    ).all()
    return render_template(
        "accounts/profile.html",
        password_form=password_form or PasswordForm(formdata=None),
        token_form=token_form or TokenForm(formdata=None),
        action_form=EmptyForm(formdata=None),
        tokens=tokens,
        new_token=new_token,
    )


@bp.get("/profile")
@role("viewer")
def profile() -> Any:
    held = shown_once.take("token")
    return profile_page(new_token=held["value"] if held else None)


@bp.post("/profile/password")
@role("viewer")
def password() -> Any:
    form = PasswordForm()
    if not form.validate_on_submit():
        return profile_page(password_form=form), 422
    try:
        change_password(current_user, form.current.data, form.new.data)
    except AccountError as exc:
        form.current.errors = [str(exc)]
        return profile_page(password_form=form), 422
    login_user(current_user._get_current_object())  # this session goes on, the others end
    flash("Your password is changed.")
    return redirect(url_for("accounts.profile"))


@bp.post("/profile/tokens")
@role("viewer")
def create_api_token() -> Any:
    form = TokenForm()
    if not form.validate_on_submit():
        return profile_page(token_form=form), 422
    token = create_token(current_user, form.name.data.strip())
    if shown_once.keep("token", token):
        return redirect(url_for("accounts.profile"), 303)
    return profile_page(new_token=token), 201


@bp.post("/profile/tokens/<int:token_id>/revoke")
@role("viewer")
def revoke(token_id: int) -> Any:
    if EmptyForm().validate_on_submit():
        try:
            token = revoke_token(current_user, token_id)
            flash(f"Token “{token.name}” ({token.prefix}…) is revoked.")
        except AccountError:
            abort(404)
    return redirect(url_for("accounts.profile"))
