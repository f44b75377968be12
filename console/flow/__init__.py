"""Resume and cancel links (docs/links.md): no login, the token is the credential."""

from flask import Blueprint

bp = Blueprint("flow", __name__, url_prefix="/flow")

from . import routes  # noqa: E402,F401
