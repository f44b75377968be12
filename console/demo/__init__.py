"""A demo "external job" service of the console's own, so the example workflows work offline.

``POST /demo/jobs`` starts a pretend job that is done after N seconds; ``GET /demo/jobs/<id>``
reports it, and an optional ``callback_url`` (a resume link of this console) is POSTed when the
job ends. It is a demo: public, small JSON in Redis with a one-day TTL, nothing in the database.
"""

from flask import Blueprint

bp = Blueprint("demo", __name__, url_prefix="/demo")

from . import routes  # noqa: E402,F401
