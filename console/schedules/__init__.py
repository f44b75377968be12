"""A workflow's Schedules tab: cron schedules, their next fires and their history."""

from flask import Blueprint

bp = Blueprint("schedules", __name__)

from . import routes  # noqa: E402,F401
