"""The domain commands (docs/commands.md): users, tokens, workflows, runs (secrets are in
``console.secrets.cli``). The process commands (``flask up``, ``flask worker``,
``flask scheduler``) are in ``workers.cli``."""

from __future__ import annotations

import gzip
import io
import json
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from . import runs as domain
from .auth import create_token, create_user, reset_password
from .definitions import export_definition, normalise, save_workflow
from .errors import ConsoleError, ValidationFailed
from .extensions import db
from .jsonbody import JSONRefused, parse_json
from .models import ROLES, TERMINAL, User, Workflow
from .serialize import run_detail, workflow_summary

users_cli = AppGroup("users", help="Manage console users.")
tokens_cli = AppGroup("tokens", help="Manage API tokens.")
workflows_cli = AppGroup("workflows", help="Import, export and list workflow definitions.")
runs_cli = AppGroup("runs", help="Start and operate runs.")


def init_app(app: Flask) -> None:
    from .secrets.cli import secrets_cli

    for group in (users_cli, tokens_cli, workflows_cli, runs_cli, secrets_cli):
        app.cli.add_command(group)


def fail(exc: ConsoleError | ValueError) -> NoReturn:
    message = exc.message if isinstance(exc, ConsoleError) else str(exc)
    details = exc.details if isinstance(exc, ConsoleError) else []
    click.echo(f"Error: {message}", err=True)
    for detail in details:
        if isinstance(detail, dict):
            click.echo(f"  {detail.get('path', '')}: {detail.get('message', '')}", err=True)
        else:
            click.echo(f"  {detail}", err=True)
    raise SystemExit(1)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


# --------------------------------------------------------------------------------- users


@users_cli.command("create")
@click.argument("email")
@click.option("--role", "role_name", type=click.Choice(ROLES), default="viewer")
@click.option("--password", default=None, help="Generated and printed when omitted.")
def users_create(email: str, role_name: str, password: str | None) -> None:
    try:
        user, password_used = create_user(email, role_name, password)
    except ValueError as exc:
        fail(exc)
    click.echo(f"Created {user.email} ({user.role}).")
    if password is None:
        click.echo(f"Password: {password_used}")


def user_by_email(email: str) -> User:
    user = db.session.scalar(select(User).filter_by(email=email.strip().lower()))
    if user is None:
        fail(ValueError(f"no user with email {email}"))
    return user


@users_cli.command("password")
@click.argument("email")
def users_password(email: str) -> None:
    """Give EMAIL a new generated password and print it (for a lost one)."""
    user = user_by_email(email)
    password = reset_password(user)
    click.echo(f"New password for {user.email} ({user.role}); it is shown only once:")
    click.echo(password)


@users_cli.command("ensure-admin")
def users_ensure_admin() -> None:
    """Create the first admin from CONSOLE_ADMIN_EMAIL/PASSWORD when no user exists."""
    if current_app.config["CONSOLE_ENV"] == "production" and not (
        current_app.config.get("CONSOLE_ADMIN_EMAIL")
        and current_app.config.get("CONSOLE_ADMIN_PASSWORD")
    ):
        if not db.session.scalar(select(func.count()).select_from(User)):
            click.echo(
                "No users yet: set CONSOLE_ADMIN_EMAIL and CONSOLE_ADMIN_PASSWORD, or run "
                "flask users create EMAIL --role admin"
            )
        return
    message = ensure_admin()
    click.echo(message or "Users exist; nothing to do.")


def ensure_admin() -> str | None:
    """With no user at all, create the first admin; return how to log in, once."""
    if db.session.scalar(select(func.count()).select_from(User)):
        return None
    email = current_app.config.get("CONSOLE_ADMIN_EMAIL")
    password = current_app.config.get("CONSOLE_ADMIN_PASSWORD")
    if email and password:
        create_user(email, "admin", password)
        return f"Log in as {email} with the password from CONSOLE_ADMIN_PASSWORD."
    user, generated = create_user("admin@localhost", "admin")
    return (
        f"Log in as {user.email} with password {generated}\n"
        "  (shown once; create others with: flask users create EMAIL --role ROLE)"
    )


@tokens_cli.command("create")
@click.argument("email")
@click.option("--name", default="cli", help="A label to recognise the token by.")
def tokens_create(email: str, name: str) -> None:
    """Print a new API token for EMAIL as the last line."""
    user = user_by_email(email)
    click.echo(f"API token for {user.email} ({user.role}); it is shown only once:")
    click.echo(create_token(user, name))


# ----------------------------------------------------------------------------- workflows


@workflows_cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def workflows_import(files: tuple[str, ...]) -> None:
    failed = False
    for path in files:
        try:
            data = parse_json(Path(path).read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            click.echo(f"{path}: not UTF-8 text", err=True)
            failed = True
            continue
        except json.JSONDecodeError as exc:
            click.echo(f"{path}: not JSON: line {exc.lineno}: {exc.msg}", err=True)
            failed = True
            continue
        except JSONRefused as exc:
            click.echo(f"{path}: not JSON the console takes: {exc}", err=True)
            failed = True
            continue
        try:
            workflow, version, published = save_workflow(data)
        except ConsoleError as exc:
            click.echo(f"{path}: {exc.message}", err=True)
            for d in exc.details:
                click.echo(f"  {d['path']}: {d['message']}", err=True)
            failed = True
            continue
        label = version.label if version else "-"
        state = "published" if published else "unchanged"
        click.echo(f"{path}: {workflow.name} {label} ({state})")
    if failed:
        raise SystemExit(1)


EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def example_files(folder: Path | None = None) -> list[Path]:
    folder = EXAMPLES_DIR if folder is None else folder
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def import_examples(
    folder: Path | None = None, *, only_if_empty: bool = True, replace: bool = False
) -> list[str]:
    """Publish the example workflows (``examples/*.json``); return the names published.

    With ``only_if_empty`` (what ``flask up`` does) nothing is imported into a database that
    has any workflow. Otherwise examples whose name is taken are skipped, unless ``replace``:
    then a changed example is published as a new version of that workflow. Every file is
    validated before any is saved; a bad one raises ``ValidationFailed`` naming it.
    """
    if only_if_empty and db.session.scalar(select(func.count()).select_from(Workflow)):
        db.session.commit()
        return []
    definitions = []
    for path in example_files(folder):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            definitions.append(normalise(data))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValidationFailed(f"{path.name}: not a JSON file ({exc})") from None
        except ConsoleError as exc:
            raise ValidationFailed(f"{path.name}: {exc.message}", exc.details) from None
    existing = set(db.session.scalars(select(Workflow.name)))
    db.session.commit()
    imported = []
    for definition in definitions:
        if definition["name"] in existing and not replace:
            continue
        _, _, published = save_workflow(definition, note="example", user="examples")
        if published:
            imported.append(definition["name"])
    return imported


@workflows_cli.command("import-examples")
@click.option(
    "--replace",
    is_flag=True,
    help="Also publish changed examples over existing workflows of the same name.",
)
def workflows_import_examples(replace: bool) -> None:
    """Import the example workflows in examples/ (existing names are skipped)."""
    try:
        imported = import_examples(only_if_empty=False, replace=replace)
    except ConsoleError as exc:
        fail(exc)
    names = ", ".join(imported)
    click.echo(f"Imported {len(imported)} example workflows" + (f": {names}" if names else ""))
    skipped = len(example_files()) - len(imported)
    if skipped:
        reason = "unchanged" if replace else "their name is taken; --replace updates them"
        click.echo(f"Skipped {skipped} ({reason})")


@workflows_cli.command("export")
@click.argument("name")
@click.option("--version", "label", default=None)
def workflows_export(name: str, label: str | None) -> None:
    try:
        version = domain.get_version(domain.get_workflow(name), label)
    except ConsoleError as exc:
        fail(exc)
    echo_json(export_definition(version))


@workflows_cli.command("list")
def workflows_list() -> None:
    workflows = db.session.scalars(select(Workflow).order_by(Workflow.name)).all()
    if not workflows:
        click.echo("No workflows. Import one with: flask workflows import FILE")
    for workflow in workflows:
        s = workflow_summary(workflow)
        click.echo(
            f"{s['name']:<32} {s['latest_version'] or '-':<8} {s['steps']} steps  {s['title']}"
        )


# ---------------------------------------------------------------------------------- runs


@runs_cli.command("start")
@click.argument("name")
@click.option("--input", "input_json", default="{}", help="The run's input as JSON.")
@click.option("--version", "label", default=None)
@click.option("--wait", is_flag=True, help="Wait for the run to end and print it.")
@click.option("--timeout", default=600.0, help="Seconds to wait with --wait.")
def runs_start(name: str, input_json: str, label: str | None, wait: bool, timeout: float) -> None:
    data = _json_option(input_json, "--input")
    try:
        run, _ = domain.start_run(
            domain.get_workflow(name), data, version=label, trigger="manual", user="cli"
        )
    except ConsoleError as exc:
        fail(exc)
    click.echo(f"Started run {run.id} ({name} {run.version.label})")
    if wait:
        wait_for(run.id, timeout)


def wait_for(run_id: str, timeout: float) -> NoReturn:
    """Print the run's status changes until it ends; exit 0 when it completed, 2 when it
    failed or was canceled, 3 when it is still going after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        db.session.expire_all()
        run = domain.get_run(run_id)
        if run.status != status:
            status = run.status
            click.echo(f"  {status}")
        if run.status in TERMINAL:
            echo_json(run_detail(run))
            raise SystemExit(0 if run.status == "completed" else 2)
        db.session.commit()
        time.sleep(0.2)
    click.echo(f"Still {status} after {timeout:g} s; is a worker running?", err=True)
    raise SystemExit(3)


def _json_option(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return parse_json(text)
    except json.JSONDecodeError as exc:
        fail(ValueError(f"{what} is not JSON: {exc.msg} at column {exc.colno}"))
    except JSONRefused as exc:
        fail(ValueError(f"{what} is not JSON the console takes: {exc}"))


class CommandLineUser:
    """Whoever runs ``flask`` commands: they hold the console's configuration, so every role."""

    email = "cli"

    @staticmethod
    def has_role(role: str) -> bool:
        return True


def _print_plan(plan: dict[str, Any]) -> None:
    click.echo(f"Plan on {plan['version']}:")
    for step in plan["steps"]:
        click.echo(f"  {step['action']:<8} {step['name']:<32} {step['reason']}")


@runs_cli.command("rerun")
@click.argument("run_id")
@click.option("--from-step", default=None, help="Reuse the steps before this one.")
@click.option("--version", "label", default="original", help="original, latest or a label.")
@click.option("--smart", is_flag=True, help="Execute only what changed and what reads it.")
@click.option("--input", "input_json", default=None, help="A new input as JSON.")
@click.option("--dry-run", is_flag=True, help="Print the plan; start nothing.")
@click.option("--wait", is_flag=True, help="Wait for the new run to end and print it.")
@click.option("--timeout", default=600.0, help="Seconds to wait with --wait.")
def runs_rerun(
    run_id: str,
    from_step: str | None,
    label: str,
    smart: bool,
    input_json: str | None,
    dry_run: bool,
    wait: bool,
    timeout: float,
) -> None:
    """Re-run a finished run, or print what a re-run would do."""
    body = {
        "from_step": from_step,
        "version": label,
        "smart": smart,
        "input": _json_option(input_json, "--input"),
        "dry_run": dry_run,
    }
    try:
        run = domain.get_run(run_id)
        request = domain.RerunRequest.parse(body)
        if dry_run:
            plan, _, _ = domain.rerun_plan(run, request)
            _print_plan(plan.view())
            return
        new, plan = domain.rerun_run(run, request, "cli")
    except ConsoleError as exc:
        fail(exc)
    _print_plan(plan.view())
    click.echo(f"Started run {new.id} (re-run of {run_id})")
    if wait:
        wait_for(new.id, timeout)


@runs_cli.command("journal")
@click.argument("run_id")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default=None)
def runs_journal(run_id: str, output: str | None) -> None:
    """Print a run's journal (or write it to a file)."""
    try:
        journal = domain.build_journal(run_id)
    except ConsoleError as exc:
        fail(exc)
    text = json.dumps(journal, indent=1)
    if output is None:
        click.echo(text)
        return
    Path(output).write_text(text + "\n", encoding="utf-8")
    click.echo(f"Wrote the journal of run {run_id} to {output} ({len(journal['entries'])} entries)")


@runs_cli.command("recover")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--wait", is_flag=True, help="Wait for the new run to end and print it.")
@click.option("--timeout", default=600.0, help="Seconds to wait with --wait.")
def runs_recover(path: str, wait: bool, timeout: float) -> None:
    """Start a run that continues from a journal file (JSON, or gzipped as the archive keeps
    them)."""
    limit = int(current_app.config["JOURNAL_MAX_BYTES"])
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unzipped:
            raw = unzipped.read(limit + 1)  # never more than the limit, however it unpacks
    if len(raw) > limit:
        fail(ValueError(f"{path} is {len(raw)} bytes; JOURNAL_MAX_BYTES is {limit}"))
    doc = _json_option(raw.decode("utf-8", "replace"), path)
    try:
        run, recovery = domain.recover_journal(doc, CommandLineUser())
    except ConsoleError as exc:
        fail(exc)
    _print_plan(recovery.plan.view())
    click.echo(f"Started run {run.id} (recovered from run {recovery.journal_run})")
    if wait:
        wait_for(run.id, timeout)


@runs_cli.command("prune")
@click.option("--older-than", "days", type=click.IntRange(min=0), required=True, help="Days.")
@click.option("--workflow", default=None, help="Only this workflow's runs.")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
@click.option("--no-archive", is_flag=True, help="Delete without writing journals first.")
def runs_prune(days: int, workflow: str | None, dry_run: bool, no_archive: bool) -> None:
    """Delete finished runs that ended more than DAYS days ago, archiving their journals."""
    from . import retention

    verb = "Would delete" if dry_run else "Deleted"
    count = 0
    for pruned in retention.prune(days, workflow=workflow, dry_run=dry_run, archive=not no_archive):
        count += 1
        where = f" → {pruned.archive}" if pruned.archive else ""
        click.echo(
            f"{verb} run {pruned.id} ({pruned.workflow}, finished "
            f"{pruned.finished_at:%Y-%m-%d %H:%M} UTC){where}"
        )
    click.echo(f"{verb} {count} run(s) finished more than {days} day(s) ago.")


@runs_cli.command("show")
@click.argument("run_id")
def runs_show(run_id: str) -> None:
    try:
        echo_json(run_detail(domain.get_run(run_id)))
    except ConsoleError as exc:
        fail(exc)


def _action(fn: Any) -> Any:
    def command(run_id: str) -> None:
        try:
            run = fn(run_id)
        except ConsoleError as exc:
            fail(exc)
        click.echo(f"{run.id} {run.status}")

    return command


for _name, _fn in domain.ACTIONS.items():
    runs_cli.command(_name, help=f"{_name.capitalize()} a run.")(
        click.argument("run_id")(_action(_fn))
    )
