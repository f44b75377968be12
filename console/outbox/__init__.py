"""The Outbox page: every email steps sent with ``ctx.send_email`` (docs/steps.md#recorded-work)."""

from flask import Blueprint

bp = Blueprint("outbox", __name__)

from . import routes, text  # noqa: E402,F401

bp.add_app_template_filter(text.linkify, "linkify")
