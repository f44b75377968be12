"""The workflow console: a Flask app over durable runs of Python step workflows."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request

from .config import Config
from .extensions import configure_sqlite, csrf, db, htmx, login_manager, migrate
from .jsonbody import ConsoleRequest
from .text import refuse_nul_in_request
from .timeutil import isoformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_path=os.environ.get("CONSOLE_INSTANCE_PATH") or os.path.join(ROOT, "instance"),
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(Config(app.instance_path).as_dict())
    if test_config:
        app.config.from_mapping(test_config)

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

    from . import auth, cli
    from .accounts import bp as accounts_bp
    from .api import bp as api_bp
    from .demo import bp as demo_bp
    from .editor import bp as editor_bp
    from .flow import bp as flow_bp
    from .hooks import bp as hooks_bp
    from .main import bp as main_bp
    from .outbox import bp as outbox_bp
    from .schedules import bp as schedules_bp
    from .tasks import bp as tasks_bp

    auth.init_app(app)
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
    app.register_blueprint(accounts_bp)
    app.register_blueprint(demo_bp)
    csrf.exempt(demo_bp)  # a public demo service for step code, which has no session
    cli.init_app(app)

    @app.template_filter("utc")
    def _utc(value: str | None) -> str:
        """Server-side fallback; console.js shows the viewer's own timezone."""
        return (value or "").replace("T", " ").split(".")[0].replace("Z", "") + " UTC"

    app.add_template_filter(isoformat, "isoformat")

    @app.after_request
    def _no_store(response: Any) -> Any:
        """Pages and answers may carry secrets (a token or password shown once, webhook URLs,
        links): browsers and proxies keep no copy, so Back after logging out shows nothing.
        Static files stay cacheable."""
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.teardown_appcontext
    def _end_session(exc: BaseException | None) -> None:
        db.session.remove()

    return app
