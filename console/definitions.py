"""Workflow definitions (docs/definitions.md): validation, normalisation and publishing versions."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import unicodedata
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from . import scheduling, stepkinds
from .errors import Conflict, ValidationFailed
from .extensions import db, write_transaction
from .mail import normalise_recipients
from .models import ACTIVE, Run, Workflow, WorkflowVersion
from .text import nul_problems, text_problem
from .timeutil import utcnow

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# How the console operates a workflow's runs (docs/operations.md); part of each version, and
# copied onto the workflow from its latest one (``Workflow.concurrency`` …).
OPERATIONS_KEYS = ("concurrency", "retention_days", "notify")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
STEP_DEFAULTS: dict[str, Any] = {
    "retries": 0,
    "retry_delay": 5,
    "timeout": 900,
    "execute_when_recovering": False,
}
STEP_KEYS = {"name", "code", "kind", "config", *STEP_DEFAULTS}
TOP_KEYS = {
    "name",
    "title",
    "description",
    "version",
    "input_schema",
    "output_schema",
    "steps",
    "schedules",
    *OPERATIONS_KEYS,
}
SCHEDULE_KEYS = {"name", "cron", "timezone", "input", "enabled", "missed", "overlap"}
NOTIFY_ON = ("failed", "suspended")
MAX_STEPS = 200
# Characters of the text fields a definition writes: the title's column is String(200); the
# others are Text, limited so that one definition stays a sensible size.
MAX_TITLE = 200
MAX_DESCRIPTION = 10_000
MAX_NOTE = 10_000
MAX_CODE = 100_000


def snake_case(title: str) -> str:
    # "Über Café" → "uber_cafe": accents are dropped rather than the letters that carry them.
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "_", ascii_title.strip().lower()).strip("_")
    if name and not name[0].isalpha():
        name = "w_" + name
    return name[:63]


class Problems:
    """Collects one ``{"path", "message"}`` per problem so a user can fix them all at once."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"path": path, "message": message})

    def raise_if_any(self, message: str = "Invalid workflow definition") -> None:
        if self.items:
            raise ValidationFailed(message, self.items)


def check_step_code(code: str, filename: str = "<step>") -> str | None:
    """Return a readable error when the code does not compile or lacks ``def run(ctx):``."""
    try:
        tree = ast.parse(code, filename=filename)
        compile(tree, filename, "exec")
    except SyntaxError as exc:
        if exc.lineno is None:
            return _null_byte_error(code, exc.msg)
        return f"line {exc.lineno}: {exc.msg}"
    except ValueError as exc:  # null bytes (Python < 3.12 raises ValueError for them)
        return _null_byte_error(code, str(exc))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "run":
            if isinstance(node, ast.AsyncFunctionDef):
                return f"line {node.lineno}: run(ctx) must be a plain function, not async"
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            # run(ctx) is called with one positional argument: it must accept one, and every
            # other parameter must have a default.
            required = len(positional) - len(args.defaults)
            required_kw = [
                a for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None
            ]
            if not (positional or args.vararg) or required > 1 or required_kw:
                return f"line {node.lineno}: run must take one argument, ctx"
            return None
    return "the code does not define run(ctx)"


def _null_byte_error(code: str, message: str) -> str:
    if "\x00" in code:
        line = code.count("\n", 0, code.index("\x00")) + 1
        return f"line {line}: the code contains a null byte"
    return message


def _check_schema(schema: Any, path: str, problems: Problems) -> None:
    if schema is None:
        return
    if not isinstance(schema, dict):
        problems.add(path, "must be a JSON Schema object or null")
        return
    # Every problem, not only the first (what check_schema raises): one detail each.
    meta = Draft202012Validator(
        Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(meta.iter_errors(schema), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        error = best_match([error]) or error
        where = "/".join(str(p) for p in error.absolute_path)
        problems.add(f"{path}/{where}" if where else path, f"invalid JSON Schema: {error.message}")


def _text(value: str, path: str, max_chars: int, problems: Problems) -> None:
    problem = text_problem(value, max_chars)
    if problem:
        problems.add(path, problem)


def _number(
    value: Any,
    path: str,
    problems: Problems,
    *,
    minimum: float,
    maximum: float,
    integer: bool = False,
) -> Any:
    ok_type = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        problems.add(path, "must be an integer" if integer else "must be a number")
        return value
    if not minimum <= value <= maximum:
        problems.add(path, f"must be between {minimum:g} and {maximum:g}")
    return value


def _normalise_step(raw: Any, index: int, problems: Problems) -> dict[str, Any]:
    path = f"/steps/{index}"
    if not isinstance(raw, dict):
        problems.add(path, "must be an object")
        return {}
    for key in sorted(set(raw) - STEP_KEYS):
        problems.add(f"{path}/{key}", "unknown field")
    step: dict[str, Any] = {"name": raw.get("name"), "code": raw.get("code")}
    name = step["name"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.add(f"{path}/name", "must match ^[a-z][a-z0-9_]{0,62}$")
    if "kind" in raw:
        _normalise_kind_step(raw, step, path, problems)
    code = step["code"]
    if not isinstance(code, str) or not code.strip():
        if "kind" not in raw:
            problems.add(f"{path}/code", "is required")
    elif len(code) > MAX_CODE:
        problems.add(f"{path}/code", f"at most {MAX_CODE} characters")
    else:
        error = check_step_code(code, f"<step {name}>")
        if error:
            problems.add(f"{path}/code", error)
    for key, default in STEP_DEFAULTS.items():
        step[key] = raw.get(key, default)
    _number(step["retries"], f"{path}/retries", problems, minimum=0, maximum=100, integer=True)
    _number(step["retry_delay"], f"{path}/retry_delay", problems, minimum=0, maximum=86400)
    _number(step["timeout"], f"{path}/timeout", problems, minimum=1, maximum=7 * 86400)
    if not isinstance(step["execute_when_recovering"], bool):
        problems.add(f"{path}/execute_when_recovering", "must be true or false")
    if "kind" in raw:
        step["kind"], step["config"] = step.pop("kind"), step.pop("config")
    return step


def _normalise_kind_step(
    raw: dict[str, Any], step: dict[str, Any], path: str, problems: Problems
) -> None:
    """A built-in kind (``console.stepkinds``): its config is checked and its code generated;
    a ``code`` given with it is replaced (editing the code means converting to a code step)."""
    kind, config = raw["kind"], raw.get("config")
    config = {} if config is None else config
    step["kind"], step["config"], step["code"] = kind, config, None
    found = stepkinds.config_problems(kind, config)
    for key, message in found:
        where = f"{path}/kind" if key == "" and kind not in stepkinds.KINDS else f"{path}/config"
        problems.add(f"{where}/{key}" if key else where, message)
    if not found:
        step["config"] = stepkinds.normalise_config(kind, config)
        step["code"] = stepkinds.generate_code(kind, step["config"])


def _normalise_schedule(
    raw: Any, index: int, problems: Problems, input_schema: Any
) -> dict[str, Any]:
    """One schedule of a definition (``console.scheduling`` owns what its fields mean)."""
    path = f"/schedules/{index}"
    if not isinstance(raw, dict):
        problems.add(path, "must be an object")
        return {}
    for key in sorted(set(raw) - SCHEDULE_KEYS):
        problems.add(f"{path}/{key}", "unknown field")
    schedule, found = scheduling.normalise_schedule(raw, input_schema)
    for key, message in found.items():
        problems.add(f"{path}/{key}", message)
    return schedule


def _normalise_notify(raw: Any, problems: Problems) -> Any:
    """``{"on": ["failed", "suspended"], "email": [addresses]}``; ``on`` defaults to failed."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.add("/notify", 'must be an object such as {"on": ["failed"], "email": [...]}')
        return raw
    for key in sorted(set(raw) - {"on", "email"}):
        problems.add(f"/notify/{key}", "unknown field")
    on = raw.get("on", ["failed"])
    if not isinstance(on, list) or not on or any(item not in NOTIFY_ON for item in on):
        problems.add("/notify/on", "must be a non-empty list of: failed, suspended")
    email = raw.get("email")
    try:
        recipients = normalise_recipients(email) if email is not None else []
    except ValueError as exc:
        problems.add("/notify/email", str(exc).removeprefix("send_email: "))
        return raw
    if not recipients:
        problems.add("/notify/email", "must list at least one address")
    on = [item for item in NOTIFY_ON if isinstance(on, list) and item in on]
    return {"on": on, "email": recipients}


def _normalise_operations(data: dict[str, Any], problems: Problems) -> dict[str, Any]:
    limits = {"concurrency": 10_000, "retention_days": 36_500}
    found: dict[str, Any] = {}
    for key, most in limits.items():
        value = found[key] = data.get(key)
        if value is not None:
            _number(value, f"/{key}", problems, minimum=1, maximum=most, integer=True)
    found["notify"] = _normalise_notify(data.get("notify"), problems)
    return found


def normalise(data: Any, name: str | None = None) -> dict[str, Any]:
    """Validate a definition and return it with every default filled in.

    Raises ``ValidationFailed`` with one detail per problem.
    """
    problems = Problems()
    if not isinstance(data, dict):
        raise ValidationFailed("A workflow definition must be a JSON object")
    for key in sorted(set(data) - TOP_KEYS - {"publish", "note"}):
        problems.add(f"/{key}", "unknown field")
    title = data.get("title") or ""
    if not isinstance(title, str):
        problems.add("/title", "must be a string")
        title = ""
    # The name in the body, else the one in the URL (PUT), else the title's (import).
    given = data.get("name") or name or (snake_case(title) if title else None)
    if name is not None and data.get("name") not in (None, name):
        problems.add("/name", f"does not match the name in the URL ({name!r})")
    if not isinstance(given, str) or not NAME_RE.match(given):
        problems.add("/name", "must match ^[a-z][a-z0-9_]{0,62}$ (or give a title)")
    definition: dict[str, Any] = {
        "name": given,
        "title": title or (given.replace("_", " ").capitalize() if isinstance(given, str) else ""),
        "description": data.get("description") or "",
        "version": data.get("version"),
        "input_schema": data.get("input_schema"),
        "output_schema": data.get("output_schema"),
    }
    if not isinstance(definition["description"], str):
        problems.add("/description", "must be a string")
    for key, limit in (("title", MAX_TITLE), ("description", MAX_DESCRIPTION)):
        if isinstance(definition[key], str):
            _text(definition[key], f"/{key}", limit, problems)
    note = data.get("note")
    if note is not None and not isinstance(note, str):
        problems.add("/note", "must be a string")
    elif note:
        _text(note, "/note", MAX_NOTE, problems)
    label = definition["version"]
    if label is not None and (not isinstance(label, str) or not LABEL_RE.match(label)):
        problems.add("/version", 'must be a label such as "v2" (letters, digits, . _ -)')
    _check_schema(definition["input_schema"], "/input_schema", problems)
    _check_schema(definition["output_schema"], "/output_schema", problems)

    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.add("/steps", "must be a non-empty list of steps")
        raw_steps = []
    if len(raw_steps) > MAX_STEPS:
        problems.add("/steps", f"at most {MAX_STEPS} steps")
    steps = [_normalise_step(raw, i, problems) for i, raw in enumerate(raw_steps)]
    _no_duplicates([s.get("name") for s in steps], "/steps", "step", problems)
    for index, step in enumerate(steps):
        earlier = [s["name"] for s in steps[:index] if isinstance(s.get("name"), str)]
        for key, message in stepkinds.step_reference_problems(step.get("config"), earlier):
            path = f"/steps/{index}/config/{key}"
            if all(item["path"] != path for item in problems.items):  # one problem per field
                problems.add(path, message)
    definition["steps"] = steps
    definition.update(_normalise_operations(data, problems))

    # Schedules are workflow-level state, not part of a version: only a definition that has
    # the key replaces them (``save_workflow``); one without it leaves them alone.
    if "schedules" in data:
        raw_schedules = data["schedules"] if data["schedules"] is not None else []
        if not isinstance(raw_schedules, list):
            problems.add("/schedules", "must be a list")
            raw_schedules = []
        schema = definition["input_schema"]
        found = [
            _normalise_schedule(raw, i, problems, schema) for i, raw in enumerate(raw_schedules)
        ]
        _no_duplicates([s.get("name") for s in found], "/schedules", "schedule", problems)
        definition["schedules"] = found
    # NUL anywhere else (step names, code, config, schemas, schedules): each path once.
    reported = {item["path"] for item in problems.items}
    for item in nul_problems(data):
        if item["path"] not in reported:
            problems.add(item["path"], item["message"])
    problems.raise_if_any()
    return definition


def _no_duplicates(names: list[Any], path: str, what: str, problems: Problems) -> None:
    seen: set[Any] = set()
    for index, name in enumerate(names):
        if name in seen and name is not None:
            problems.add(f"{path}/{index}/name", f"duplicate {what} name {name!r}")
        seen.add(name)


def content_hash(definition: dict[str, Any]) -> str:
    """Hash of what a version does; the label and the schedules are not part of it."""
    body = {k: v for k, v in definition.items() if k not in ("version", "schedules")}
    # Unset operations settings hash as before they existed: re-importing an older file
    # publishes nothing new.
    body = {k: v for k, v in body.items() if not (k in OPERATIONS_KEYS and v is None)}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _set_draft(workflow: Workflow, draft: dict[str, Any] | None, user: str | None) -> None:
    """Change the draft in the open write transaction. Every change bumps its revision, so
    an editor whose page is based on an older one is refused instead of overwriting it."""
    if draft is None and workflow.draft is None:
        return
    workflow.draft = draft
    workflow.draft_revision = (workflow.draft_revision or 0) + 1
    workflow.draft_updated_by = user
    workflow.draft_updated_at = utcnow()


def save_workflow(
    data: Any,
    name: str | None = None,
    *,
    publish: bool = True,
    note: str = "",
    user: str | None = None,
) -> tuple[Workflow, WorkflowVersion | None, bool]:
    """Create or replace a workflow from a definition.

    Publishes a new version unless ``publish`` is false or the definition is identical to the
    latest version. Returns the workflow, its latest version and whether one was published.
    """
    definition = normalise(data, name)
    write_transaction()
    workflow = db.session.scalar(select(Workflow).filter_by(name=definition["name"]))
    if workflow is None:
        workflow = Workflow(name=definition["name"])
        db.session.add(workflow)
    latest = workflow.latest_version
    workflow.updated_at = utcnow()
    # The title and description shown in lists are the published ones: a draft only sets
    # them while nothing is published yet.
    if publish or latest is None:
        workflow.title = definition["title"]
        workflow.description = definition["description"]
    wanted = definition.pop("schedules", None)
    if wanted is not None:
        db.session.flush()
        scheduling.sync_schedules(workflow, wanted)
    if not publish:
        _set_draft(workflow, definition, user)
        db.session.commit()
        if wanted is not None:
            scheduling.request_reconcile()
        return workflow, latest, False
    digest = content_hash(definition)
    if latest is not None and latest.definition_hash == digest:
        _set_draft(workflow, None, user)
        db.session.commit()
        if wanted is not None:
            scheduling.request_reconcile()
        return workflow, latest, False
    db.session.flush()
    number = (
        db.session.scalar(
            select(func.max(WorkflowVersion.number)).filter_by(workflow_id=workflow.id)
        )
        or 0
    ) + 1
    taken = {v.label for v in workflow.versions}
    label = definition["version"]
    if label is None:
        # Numbered labels skip one given explicitly earlier ("v2" as the first version).
        auto = number
        while f"v{auto}" in taken:
            auto += 1
        label = f"v{auto}"
    if label in taken:
        db.session.rollback()
        raise Conflict(
            f"Version {label!r} of {definition['name']!r} already exists; "
            "versions are immutable, give a new label"
        )
    stored = dict(definition, version=label)
    version = WorkflowVersion(
        workflow=workflow,
        number=number,
        label=label,
        definition=stored,
        definition_hash=digest,
        note=note or "",
        published_by=user,
    )
    db.session.add(version)
    _copy_operations(workflow, stored)
    _set_draft(workflow, None, user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(
            f"Another version of {definition['name']!r} was published at the same time; try again"
        )
    # A first version makes the workflow's schedules fire.
    scheduling.request_reconcile()
    return workflow, version, True


def export_definition(version: WorkflowVersion) -> dict[str, Any]:
    """A version's definition with the workflow's current schedules (docs/definitions.md)."""
    data = {k: v for k, v in version.definition.items() if k != "schedules"}
    data["schedules"] = [
        scheduling.schedule_definition(s) for s in scheduling.schedules_of(version.workflow_id)
    ]
    return data


def delete_version(version: WorkflowVersion) -> None:
    """Mark a version deleted (the runs that used it keep it); refused while one is active."""
    write_transaction()
    active = db.session.scalar(
        select(Run.id).where(Run.version_id == version.id, Run.status.in_(tuple(ACTIVE))).limit(1)
    )
    if active is not None:
        db.session.rollback()
        raise Conflict(
            f"Version {version.label!r} is used by active runs (e.g. {active}); "
            "cancel or finish them first"
        )
    version.deleted_at = utcnow()
    latest = version.workflow.latest_version
    _copy_operations(version.workflow, latest.definition if latest is not None else {})
    db.session.commit()


def _copy_operations(workflow: Workflow, definition: dict[str, Any]) -> None:
    """The workflow follows its latest version's operations settings."""
    for key in OPERATIONS_KEYS:
        setattr(workflow, key, definition.get(key))
