"""The workflow editor: workflows, drafts, step cards, versions, step tests, the run form."""

from flask import Blueprint

bp = Blueprint("editor", __name__)

from . import routes, run_form, step_tests, versions  # noqa: E402,F401
