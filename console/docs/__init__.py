"""The user documentation: the Markdown pages of ``docs/`` served as console pages, so that
the help links on the console's pages work offline and always match the installed version."""

from flask import Blueprint

bp = Blueprint("docs", __name__, url_prefix="/docs")

from . import routes  # noqa: E402,F401
