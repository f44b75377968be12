"""The workflow console: a Flask app over durable runs of Python step workflows."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask, current_app, request

from .access_log import add_filter
from .config import Config, create_private_database, instance_path, make_instance_folder
from .extensions import configure_sqlite, csrf, db, htmx, login_manager, migrate
from .jsonbody import ConsoleRequest
from .text import refuse_nul_in_request
from .timeutil import isoformat
from .tracebacks import json_text, step_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Scripts and styles come only from static/: no inline script, style attribute or eval (base.html
# turns off htmx's indicator styles and its settling of style attributes). No page may be
# framed, and forms post to the console only.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)


def security_headers(response: Any) -> Any:
    """On every answer, pages, API and static files alike."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    # A link page's own URL carries its token: no referrer at all leaves it.
    secret_url = request.path.startswith(("/flow/", "/hooks/"))
    headers.setdefault("Referrer-Policy", "no-referrer" if secret_url else "same-origin")
    if current_app.config["CONSOLE_ENV"] == "production":
        # Production sends its session cookie over HTTPS only (config): so does the browser.
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_path=instance_path(),
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )
    make_instance_folder(app.instance_path)
    app.config.from_mapping(Config(app.instance_path).as_dict())
    if test_config:
        app.config.from_mapping(test_config)
    create_private_database(app.config["SQLALCHEMY_DATABASE_URI"])
    # Flask logs "Exception on <path>" and the development server logs request lines: a link's
    # token or a webhook's secret in that path stays out of the log.
    add_filter(app.logger)
    add_filter(logging.getLogger("werkzeug"))

    app.request_class = ConsoleRequest
    app.before_request(refuse_nul_in_request)
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(ROOT, "migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    htmx.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine)

    from . import auth, cli, ratelimit
    from .accounts import bp as accounts_bp
    from .api import bp as api_bp
    from .demo import bp as demo_bp
    from .docs import bp as docs_bp
    from .editor import bp as editor_bp
    from .flow import bp as flow_bp
    from .hooks import bp as hooks_bp
    from .main import bp as main_bp
    from .metrics import bp as metrics_bp
    from .outbox import bp as outbox_bp
    from .schedules import bp as schedules_bp
    from .secrets.routes import bp as secrets_bp
    from .tasks import bp as tasks_bp

    auth.init_app(app)
    ratelimit.init_app(app)
    app.register_blueprint(main_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(flow_bp)
    csrf.exempt(flow_bp)  # the link's token is the credential; API clients POST to it
    csrf.exempt(api_bp)  # the API checks CSRF itself for cookie sessions (see api.routes)
    app.register_blueprint(hooks_bp)
    csrf.exempt(hooks_bp)  # webhooks authenticate by the secret in their URL, not a session
    app.register_blueprint(outbox_bp)
    app.register_blueprint(tasks_bp)
    app.register_blueprint(editor_bp)
    app.register_blueprint(schedules_bp)
    app.register_blueprint(secrets_bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(demo_bp)
    app.register_blueprint(docs_bp)
    app.register_blueprint(metrics_bp)
    csrf.exempt(demo_bp)  # a public demo service for step code, which has no session
    cli.init_app(app)

    @app.template_filter("utc")
    def _utc(value: str | None) -> str:
        """Server-side fallback; console.js shows the viewer's own timezone."""
        return (value or "").replace("T", " ").split(".")[0].replace("Z", "") + " UTC"

    app.add_template_filter(isoformat, "isoformat")
    app.add_template_global(step_error, "step_error")
    app.add_template_filter(json_text, "json_text")

    @app.after_request
    def _no_store(response: Any) -> Any:
        """Pages and answers may carry secrets (a token or password shown once, webhook URLs,
        links): browsers and proxies keep no copy, so Back after logging out shows nothing.
        Static files stay cacheable."""
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.after_request(security_headers)

    @app.teardown_appcontext
    def _end_session(exc: BaseException | None) -> None:
        db.session.remove()

    return app
