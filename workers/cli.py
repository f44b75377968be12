"""The process commands (docs/commands.md): ``flask worker``, ``flask scheduler`` and
``flask up``. They are Flask CLI plugin commands (the ``flask.commands`` entry points in
pyproject.toml), so that the console package never imports ``workers``; the domain commands
are in ``console.cli``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade

from console.cli import ensure_admin, import_examples
from console.config import STACK_URL_FILE
from console.errors import ConsoleError
from console.extensions import db
from console.queueing import get_redis, redis_url
from console.redis_server import embedded_running, stop_embedded

from .app import set_app
from .scheduler import SchedulerProcess
from .supervisor import Supervisor, web_command
from .worker import ConsoleWorker, SimpleConsoleWorker, default_queues


@click.command("worker")
@click.option("--burst", is_flag=True, help="Quit when the queue is empty.")
@click.option(
    "--simple",
    is_flag=True,
    help="Skip the warm-up at start (for tests); jobs always execute in this process.",
)
@click.option("--name", default=None)
@with_appcontext
def worker(burst: bool, simple: bool, name: str | None) -> None:
    """An RQ worker for runs and the editor's step tests (the run queue first)."""
    set_app(current_app._get_current_object())  # type: ignore[attr-defined]
    conn = get_redis()
    queues = default_queues(conn)
    cls = SimpleConsoleWorker if simple else ConsoleWorker
    db.session.remove()
    db.engine.dispose()
    cls(queues, connection=conn, name=name).work(burst=burst, logging_level="INFO")


@click.command("scheduler")
@click.option("--iterations", type=int, default=None, hidden=True)
@with_appcontext
def scheduler(iterations: int | None) -> None:
    """The scheduler process: cron fires, run timers and the reconciler."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(message)s")
    SchedulerProcess().run(iterations)


def how_to_log_in() -> str:
    """What ``flask up`` prints: the first admin's password once, then how to get in."""
    return ensure_admin() or (
        "Log in with your account. A lost password: flask users password EMAIL prints a new one."
    )


@click.command("up")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--workers", "worker_count", default=1, show_default=True)
@with_appcontext
def up(host: str, worker_count: int) -> None:
    """The whole stack on one machine: migrations, Redis, web, workers and the scheduler."""
    app = current_app
    port = app.config["PORT"]
    # This stack's own URL (never one recorded by an earlier stack that did not stop cleanly).
    base = (os.environ.get("BASE_URL", "").strip() or f"http://127.0.0.1:{port}").rstrip("/")
    app.config["BASE_URL"] = base
    upgrade()
    # An embedded Redis that this command starts is stopped with it; one already running
    # (another command's) is left alone.
    owns_redis = not app.config.get("REDIS_URL") and not embedded_running(app.instance_path)
    url = redis_url()
    login = how_to_log_in()
    try:
        examples = import_examples()
    except ConsoleError as exc:
        examples = []
        click.echo(f"Examples not imported: {exc.message}", err=True)
    env = dict(os.environ, REDIS_URL=url, PORT=str(port), FLASK_APP="console", BASE_URL=base)
    venv_bin = Path(sys.executable).parent
    flask = [sys.executable, "-m", "flask", "--app", "console"]
    commands = {
        "web": web_command(str(venv_bin / "gunicorn"), f"{host}:{port}"),
        "scheduler": flask + ["scheduler"],
    }
    for i in range(worker_count):
        commands[f"worker.{i + 1}"] = flask + ["worker"]
    supervisor = Supervisor(commands, env, redis=app.instance_path if owns_redis else None)
    click.echo(f"Workflow console: {app.config['BASE_URL']}")
    click.echo(login)
    if examples:
        click.echo(
            f"Imported {len(examples)} example workflows into the empty database "
            f"({', '.join(examples)}); see examples/ and the README."
        )
    click.echo(f"Redis: {url}  Database: {db.engine.url.render_as_string(hide_password=True)}")
    click.echo("Press Ctrl+C to stop.")
    db.session.remove()
    # Commands run in another terminal print links to this stack (console.config).
    stack_url = Path(app.instance_path) / STACK_URL_FILE
    stack_url.write_text(app.config["BASE_URL"] + "\n")
    try:
        supervisor.run()
    finally:
        stack_url.unlink(missing_ok=True)
        if owns_redis:
            stop_embedded(app.instance_path)
            click.echo("Stopped the embedded Redis; its data stays in the instance folder.")
