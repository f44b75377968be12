"""``flask secrets list | set NAME | delete NAME | rotate`` (docs/commands.md). A value is read
from standard input, never from the command line (where ``ps`` and shell history see it)."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from ..errors import ConsoleError
from .store import delete_secret, list_secrets, rotate, set_secret

secrets_cli = AppGroup("secrets", help="Manage the secrets steps read (values from stdin).")


def _fail(exc: ConsoleError) -> None:
    click.echo(f"Error: {exc.message}", err=True)
    raise SystemExit(1)


@secrets_cli.command("list")
def secrets_list() -> None:
    """Names, last change and the workflows using each; never a value."""
    for s in list_secrets():
        used = ", ".join(s["used_by"]) or "-"
        click.echo(f"{s['name']}\t{s['updated_at']}\t{s['updated_by'] or '-'}\tused by: {used}")


@secrets_cli.command("set")
@click.argument("name")
def secrets_set(name: str) -> None:
    """Create or replace NAME with the value read from stdin (one final newline dropped)."""
    if sys.stdin.isatty():
        click.echo(f"Type the value of {name}, then Ctrl+D:", err=True)
    value = sys.stdin.read()
    value = value[:-1] if value.endswith("\n") else value
    value = value[:-1] if value.endswith("\r") else value
    try:
        _, created = set_secret(name, value, "cli")
    except ConsoleError as exc:
        _fail(exc)
    click.echo(f"{'Created' if created else 'Replaced'} secret {name}")


@secrets_cli.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete even while workflows use it.")
def secrets_delete(name: str, force: bool) -> None:
    try:
        delete_secret(name, force=force)
    except ConsoleError as exc:
        _fail(exc)
    click.echo(f"Deleted secret {name}")


@secrets_cli.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every value under the current SECRETS_KEY (fallbacks read the old ones)."""
    try:
        count, tasks = rotate()
    except ConsoleError as exc:
        _fail(exc)
    click.echo(f"Re-encrypted {count} secrets and {tasks} task results under the current key")
