"""Recovering a run from a journal (docs/runs.md#recover): the journal's checks (one detail per
problem, nothing created on a refusal), the version the new run is pinned to (an identical one,
or the journal's definition published), and the new run that continues where the journal ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..definitions import content_hash, normalise, save_workflow
from ..errors import ConsoleError, Forbidden, ValidationFailed
from ..extensions import db
from ..models import RUN_STATUSES, Run, Workflow, WorkflowVersion
from .journal import ENTRY_TYPES, FORMAT, WAIT_PREFIX
from .plan import Plan, PlannedStep, step_hash, valid_reads
from .start import Seed, input_problems, start_seeded_run

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_PROBLEMS = 50


@dataclass
class Recovery:
    """What recovering a journal will do: the version (an existing one, or ``publish`` the
    journal's definition as a new one) and, per step, reuse or execute."""

    workflow: str
    journal_run: str
    journal_status: str
    definition: dict[str, Any]
    version: WorkflowVersion | None
    plan: Plan
    seeds: list[Seed] = field(default_factory=list)
    input: dict[str, Any] = field(default_factory=dict)

    @property
    def publishes(self) -> bool:
        return self.version is None

    def view(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "recovered_from": self.journal_run,
            "journal_status": self.journal_status,
            "publishes_version": self.publishes,
            "plan": self.plan.view(),
        }


def _problems(doc: Any) -> tuple[list[dict[str, str]], dict[str, Any] | None]:
    """Every problem of a journal, and its definition normalised when that one is valid."""
    problems: list[dict[str, str]] = []

    def add(path: str, message: str) -> None:
        problems.append({"path": path, "message": message})

    if not isinstance(doc, dict):
        add("/", "a journal must be a JSON object")
        return problems, None
    if doc.get("format") != FORMAT:
        add("/format", f"must be {FORMAT!r}")
    run = doc.get("run")
    if not isinstance(run, dict):
        add("/run", "must be an object")
    else:
        run_id = run.get("id")
        if not isinstance(run_id, str) or not 1 <= len(run_id) <= 64 or "\x00" in run_id:
            add("/run/id", "must be a run id (a string of 1 to 64 characters)")
        if run.get("status") not in RUN_STATUSES:
            add("/run/status", f"must be one of {', '.join(RUN_STATUSES)}")
    workflow = doc.get("workflow")
    if not isinstance(workflow, str) or not NAME_RE.match(workflow):
        add("/workflow", "must match ^[a-z][a-z0-9_]{0,62}$")
    definition = None
    version = doc.get("version")
    raw = version.get("definition") if isinstance(version, dict) else None
    if not isinstance(raw, dict):
        add("/version/definition", "must be a workflow definition (an object)")
    else:
        raw = {k: v for k, v in raw.items() if k not in ("name", "schedules")}
        try:
            definition = normalise(raw, workflow if isinstance(workflow, str) else None)
        except ValidationFailed as exc:
            for item in exc.details or [{"path": "", "message": exc.message}]:
                add("/version/definition" + item["path"], item["message"])
    run_input = doc.get("input")
    if not isinstance(run_input, dict):
        add("/input", "must be an object")
    elif definition is not None:
        for item in input_problems(definition.get("input_schema"), run_input):
            add("/input" + item["path"].rstrip("/"), item["message"])
    entries = doc.get("entries")
    if not isinstance(entries, list):
        add("/entries", "must be a list")
    else:
        names = _step_names(definition or raw)
        _entry_problems(entries, names, add)
    return problems[:MAX_PROBLEMS], definition


def _step_names(definition: Any) -> set[str] | None:
    """The step names of a definition, also of one that does not validate (so that its
    entries are checked against it too)."""
    steps = definition.get("steps") if isinstance(definition, dict) else None
    if not isinstance(steps, list):
        return None
    return {s["name"] for s in steps if isinstance(s, dict) and isinstance(s.get("name"), str)}


def _entry_problems(entries: list[Any], names: set[str] | None, add: Any) -> None:
    last = 0
    for i, entry in enumerate(entries):
        path = f"/entries/{i}"
        if not isinstance(entry, dict):
            add(path, "must be an object")
            continue
        seq, kind = entry.get("seq"), entry.get("type")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq <= last:
            add(f"{path}/seq", "must be an integer greater than the previous entry's")
        else:
            last = seq
        if kind not in ENTRY_TYPES:
            add(f"{path}/type", f"unknown entry type {kind!r}")
        at = entry.get("at")
        try:
            datetime.fromisoformat(str(at))
        except ValueError:
            add(f"{path}/at", "must be an ISO 8601 time")
        step = entry.get("step")
        if step is not None and names is not None and step not in names:
            add(f"{path}/step", f"no step named {step!r} in the journal's definition")
        if (
            kind in ("task", "wait", "step_completed", "step_started", "step_failed")
            and step is None
        ):
            add(f"{path}/step", f"a {kind} entry names its step")
        if kind in ("task", "wait"):
            key = entry.get("key")
            if not isinstance(key, str) or not key or len(key) > 200 or "\x00" in key:
                add(f"{path}/key", "must be a non-empty string without NUL")
        if kind == "wait":
            try:
                datetime.fromisoformat(str(entry.get("until")))
            except ValueError:
                add(f"{path}/until", "must be an ISO 8601 time")
        if kind == "step_completed":
            if "output" not in entry:
                add(f"{path}/output", "is required")
            for key in ("reused_from", "content_hash"):
                value = entry.get(key)
                if value is not None and not (
                    isinstance(value, str) and 0 < len(value) <= 64 and "\x00" not in value
                ):
                    add(f"{path}/{key}", "must be a string of 1 to 64 characters, or null")
        runs = entry.get("runs", 1)
        if step is not None and (isinstance(runs, bool) or not isinstance(runs, int) or runs < 1):
            add(f"{path}/runs", "must be a positive integer")


def plan_recovery(doc: Any) -> Recovery:
    """Check ``doc`` and work out what recovering it does; creates nothing."""
    problems, definition = _problems(doc)
    if problems or definition is None:
        raise ValidationFailed("The journal is not valid", problems)
    workflow_name, run_id = doc["workflow"], doc["run"]["id"]
    completed: dict[str, dict[str, Any]] = {}
    tasks: dict[str, dict[str, Any]] = {}
    for entry in doc["entries"]:
        step = entry.get("step")
        if entry["type"] == "step_completed":
            completed[step] = entry
        elif entry["type"] == "task":
            tasks.setdefault(step, {}).setdefault(entry["key"], entry.get("result"))
        elif entry["type"] == "wait":
            tasks.setdefault(step, {}).setdefault(
                WAIT_PREFIX + entry["key"], {"until": entry["until"]}
            )
    version = _identical_version(workflow_name, definition)
    plan = Plan(version.label if version is not None else "new")
    seeds, executes = [], False
    for position, step in enumerate(definition["steps"]):
        name, done = step["name"], completed.get(step["name"])
        if done is not None and not executes:
            wants = bool(step.get("execute_when_recovering"))
            plan.steps.append(PlannedStep(name, "reuse", "completed in the journal", wants))
            seeds.append(_seed(name, position, done, run_id, step, tasks.get(name, {}), wants))
            continue
        reason = "did not complete in the journal" if not executes else "after the journal's end"
        if not executes and tasks.get(name):
            # The first incomplete step executes anew, its recorded ctx.task results reused.
            seeds.append(Seed(name, position, tasks=tasks[name], tasks_only=True))
        executes = True
        plan.steps.append(PlannedStep(name, "execute", reason))
    return Recovery(
        workflow=workflow_name,
        journal_run=run_id,
        journal_status=doc["run"]["status"],
        definition=definition,
        version=version,
        plan=plan,
        seeds=seeds,
        input=doc["input"],
    )


def _seed(
    name: str,
    position: int,
    entry: dict[str, Any],
    run_id: str,
    step: dict[str, Any],
    tasks: dict[str, Any],
    recovering: bool,
) -> Seed:
    reads = entry.get("reads")
    return Seed(
        name=name,
        position=position,
        output=entry.get("output"),
        resume_data=entry.get("resume_data"),
        timed_out=bool(entry.get("timed_out")),
        runs=entry.get("runs") or 1,
        reused_from=entry.get("reused_from") or run_id,
        content_hash=entry.get("content_hash") or step_hash(step),
        reads=valid_reads(reads),
        recovering=recovering,
        tasks=tasks,
    )


def _identical_version(workflow_name: str, definition: dict[str, Any]) -> WorkflowVersion | None:
    workflow = db.session.scalar(select(Workflow).filter_by(name=workflow_name))
    if workflow is None:
        return None
    digest = content_hash(definition)
    for version in reversed(workflow.live_versions):
        if version.definition_hash == digest:
            return version
    return None


def recover_journal(doc: Any, user: Any) -> tuple[Run, Recovery]:
    """Start the run ``plan_recovery`` describes. Publishing the journal's definition needs
    the editor role (403); recovering onto an identical version, operator."""
    recovery = plan_recovery(doc)
    version = recovery.version
    if version is None:
        if not user.has_role("editor"):
            raise Forbidden(
                "This journal brings a definition that no version of "
                f"{recovery.workflow!r} has; publishing it needs the editor role"
            )
        definition = dict(recovery.definition)
        workflow = db.session.scalar(select(Workflow).filter_by(name=recovery.workflow))
        taken = {v.label for v in workflow.versions} if workflow is not None else set()
        if definition.get("version") in taken:
            definition["version"] = None  # numbered anew: labels never move
        _, version, _ = save_workflow(
            definition,
            recovery.workflow,
            note=f"from the journal of run {recovery.journal_run}",
            user=user.email,
        )
        if version is None:  # pragma: no cover - save_workflow always publishes here
            raise ConsoleError("The journal's definition could not be published")
        recovery.version = version
        recovery.plan.version = version.label
    run = start_seeded_run(
        version,
        recovery.input,
        recovery.seeds,
        trigger="recover",
        user=user.email,
        recovered_from=recovery.journal_run,
    )
    return run, recovery
