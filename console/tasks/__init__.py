"""The Tasks page, the Approvals view and the run page: operate runs in the browser."""

from flask import Blueprint

bp = Blueprint("tasks", __name__)

from . import journals, reruns, routes  # noqa: E402,F401
