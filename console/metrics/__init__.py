"""``GET /metrics``: Prometheus text, computed from the database and Redis at scrape time."""

from flask import Blueprint

bp = Blueprint("metrics", __name__)

from . import routes  # noqa: E402,F401
