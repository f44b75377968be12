"""Webhook triggers: ``POST /hooks/<workflow>/<secret>`` starts a run (docs/links.md#webhooks).

No login and no CSRF token: the request authenticates by the secret in its URL.
"""

from flask import Blueprint

bp = Blueprint("hooks", __name__, url_prefix="/hooks")

from . import routes  # noqa: E402,F401
