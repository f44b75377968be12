"""Accounts: the users page for admins and the profile page with API tokens."""

from flask import Blueprint

bp = Blueprint("accounts", __name__)

from . import routes  # noqa: E402,F401
