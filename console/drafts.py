"""Drafts: the definition a person edits in the browser before publishing it.

A workflow's draft is saved whole, with a revision check: every save, publish and discard
increments ``Workflow.draft_revision`` in one conditional UPDATE, and a save based on an older
revision is refused naming who saved in between, so nobody's edit is overwritten silently.
Publishing goes through ``console.definitions.save_workflow``. Schedules are not part of a
draft: they are workflow-level state with a tab of their own.

Also here: the editor's edits of a draft's steps (add, delete, move, order, convert) and the
diff between two definitions (a version and another, or the draft).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from itertools import zip_longest
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from .definitions import (
    NAME_RE,
    OPERATIONS_KEYS,
    STEP_DEFAULTS,
    normalise,
    save_workflow,
    snake_case,
)
from .errors import Conflict, NotFound, ValidationFailed
from .extensions import changed_rows, db, write_transaction
from .models import Workflow, WorkflowVersion
from .timeutil import isoformat, utcnow

Steps = list[dict[str, Any]]
DRAFT_KEYS = (
    "name",
    "title",
    "description",
    "input_schema",
    "output_schema",
    "steps",
    *OPERATIONS_KEYS,
)
STEP_SETTINGS = tuple(STEP_DEFAULTS)


class StaleDraft(Conflict):
    """A save based on an older revision: someone else saved, published or discarded since."""

    def __init__(self, by: str | None, at: datetime | None, revision: int) -> None:
        self.by = by or "Someone"
        self.at = isoformat(at) if at else None
        self.revision = revision
        when = f" at {self.at}" if self.at else ""
        super().__init__(f"{self.by} saved this workflow{when}; reload to see their changes")

    @classmethod
    def of(cls, workflow: Workflow) -> StaleDraft:
        """The conflict with the workflow's draft as it is now."""
        return cls(workflow.draft_updated_by, workflow.draft_updated_at, workflow.draft_revision)


def empty_definition(name: str, title: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "title": title or name.replace("_", " ").capitalize(),
        "description": "",
        "input_schema": None,
        "output_schema": None,
        "steps": [],
    }


def as_draft(definition: dict[str, Any]) -> dict[str, Any]:
    """Only what a draft holds: no version label, no schedules."""
    draft = {key: definition.get(key) for key in DRAFT_KEYS}
    draft["description"] = draft["description"] or ""
    draft["steps"] = [dict(step) for step in definition.get("steps") or []]
    return draft


def editable_definition(workflow: Workflow) -> dict[str, Any]:
    """What the editor shows: the draft, else the latest version, else an empty workflow."""
    if workflow.draft is not None:
        return as_draft(workflow.draft)
    latest = workflow.latest_version
    if latest is not None:
        return as_draft(latest.definition)
    return empty_definition(workflow.name, workflow.title)


def create_workflow(title: str, name: str | None, user: str | None) -> Workflow:
    """A new workflow with an empty draft and no version yet."""
    title = title.strip()
    name = (name or "").strip() or snake_case(title)
    if not NAME_RE.match(name):
        raise ValidationFailed(
            "Invalid name",
            [{"path": "/name", "message": "must match ^[a-z][a-z0-9_]{0,62}$ (or give a title)"}],
        )
    write_transaction()
    if db.session.scalar(db.select(Workflow.id).filter_by(name=name)) is not None:
        db.session.rollback()
        raise Conflict(f"A workflow named {name!r} already exists")
    now = utcnow()
    workflow = Workflow(
        name=name,
        title=title or name.replace("_", " ").capitalize(),
        draft=empty_definition(name, title),
        draft_revision=1,
        draft_updated_by=user,
        draft_updated_at=now,
    )
    db.session.add(workflow)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"A workflow named {name!r} already exists")
    return workflow


def _stale(workflow: Workflow) -> StaleDraft:
    db.session.rollback()
    db.session.refresh(workflow)
    return StaleDraft.of(workflow)


def _bump(workflow: Workflow, base_revision: int, user: str | None, **values: Any) -> int:
    """One conditional UPDATE: apply ``values`` only if nobody changed the draft since
    ``base_revision``. Returns the new revision; raises StaleDraft otherwise."""
    now = utcnow()
    write_transaction()
    result = db.session.execute(
        update(Workflow)
        .where(Workflow.id == workflow.id, Workflow.draft_revision == base_revision)
        .values(
            draft_revision=Workflow.draft_revision + 1,
            draft_updated_by=user,
            draft_updated_at=now,
            updated_at=now,
            **values,
        )
        .execution_options(synchronize_session=False)
    )
    changed = changed_rows(result)
    if not changed:
        raise _stale(workflow)
    db.session.commit()
    db.session.refresh(workflow)
    return workflow.draft_revision


def save_draft(
    workflow: Workflow, definition: dict[str, Any], base_revision: int, user: str | None
) -> int:
    """Save the whole draft; refused (StaleDraft) when it is not based on the latest revision."""
    draft = as_draft(dict(definition, name=workflow.name))
    return _bump(workflow, base_revision, user, draft=draft)


def import_draft(data: Any, name: str | None, user: str | None) -> Workflow:
    """A definition file as the draft of its workflow (created when new). The file is checked
    whole first; its schedules, if any, are not part of a draft."""
    definition = normalise(data, name)
    workflow = db.session.scalar(db.select(Workflow).filter_by(name=definition["name"]))
    if workflow is None:
        workflow = create_workflow(definition["title"], definition["name"], user)
    # An import replaces the draft on purpose: based on whatever revision is current.
    save_draft(workflow, definition, workflow.draft_revision, user)
    return workflow


def discard_draft(workflow: Workflow, base_revision: int, user: str | None) -> int:
    return _bump(workflow, base_revision, user, draft=None)


def publish_draft(
    workflow: Workflow, base_revision: int, note: str, user: str | None
) -> tuple[WorkflowVersion | None, bool]:
    """Freeze the draft into the next version. Returns (latest version, whether published):
    a draft identical to the latest version publishes nothing (and is dropped)."""
    if workflow.draft is None:
        raise Conflict("There are no unpublished changes to publish")
    data = as_draft(workflow.draft)
    normalise(data, workflow.name)  # every problem at once, before anything changes
    _bump(workflow, base_revision, user)
    _, version, published = save_workflow(
        data, workflow.name, publish=True, note=note.strip(), user=user
    )
    return version, published


# ------------------------------------------------------------------------- the step edits


def step_edit(
    change: Callable[..., Steps | None],
) -> Callable[..., dict[str, Any]]:
    """One of the editor's buttons on the steps, from ``change(steps, *args)`` (the new steps,
    or None when nothing changes): the edit reads the draft, changes its steps and saves it
    whole (StaleDraft when ``base_revision`` is not the latest); it returns the draft."""

    @wraps(change)
    def edit(
        workflow: Workflow, *args: Any, base_revision: int, user: str | None
    ) -> dict[str, Any]:
        definition = editable_definition(workflow)
        steps = change(definition["steps"], *args)
        if steps is not None:
            definition["steps"] = steps
            save_draft(workflow, definition, base_revision, user)
        return definition

    return edit


def _position(steps: Steps, step: str) -> int:
    # The views have checked that the step exists (an unknown one is a conflict or a 404).
    for index, item in enumerate(steps):
        if item["name"] == step:
            return index
    raise NotFound(f"There is no step {step!r}")


@step_edit
def add_step(steps: Steps, new: dict[str, Any], position: int) -> Steps | None:
    """Insert ``new`` at ``position`` (at the end when past it)."""
    steps.insert(min(position, len(steps)), new)
    return steps


@step_edit
def delete_step(steps: Steps, step: str) -> Steps | None:
    del steps[_position(steps, step)]
    return steps


@step_edit
def move_step(steps: Steps, step: str, direction: str) -> Steps | None:
    """One place ``up`` or down; the first step up (the last down) stays and nothing is saved."""
    index = _position(steps, step)
    target = index - 1 if direction == "up" else index + 1
    if not 0 <= target < len(steps):
        return None
    steps[index], steps[target] = steps[target], steps[index]
    return steps


@step_edit
def order_steps(steps: Steps, order: list[str]) -> Steps | None:
    """The steps in the order of their names (after a drag). The same names in another order
    only: a step added, renamed or deleted since the page was drawn is a Conflict."""
    by_name = {s["name"]: s for s in steps}
    if sorted(order) != sorted(by_name):
        raise Conflict("The steps changed since this page was loaded; reload it.")
    if order == list(by_name):
        return None  # dropped where it was: nothing changes
    return [by_name[n] for n in order]


@step_edit
def convert_step(steps: Steps, step: str) -> Steps | None:
    """A built-in kind becomes an ordinary code step with the code it generated."""
    current = steps[_position(steps, step)]
    current.pop("kind", None)
    current.pop("config", None)
    return steps


# ------------------------------------------------------------------------------- the diff


@dataclass
class Row:
    """One line of a side-by-side diff."""

    tag: str  # equal, replace, delete, insert, skip (a run of unchanged lines left out)
    old_no: int | None
    old: str
    new_no: int | None
    new: str


@dataclass
class StepChange:
    name: str
    status: str  # added, removed, changed, unchanged
    moved: bool = False
    old_position: int | None = None
    new_position: int | None = None
    code: list[Row] = field(default_factory=list)
    unified: str = ""
    settings: list[tuple[str, Any, Any]] = field(default_factory=list)


@dataclass
class FieldChange:
    label: str
    old: str
    new: str
    rows: list[Row]
    unified: str = ""


@dataclass
class Diff:
    fields: list[FieldChange]
    steps: list[StepChange]

    @property
    def changed(self) -> bool:
        return bool(self.fields) or any(s.status != "unchanged" or s.moved for s in self.steps)


def side_by_side(old: str, new: str, context: int = 3) -> list[Row]:
    a, b = old.splitlines(), new.splitlines()
    rows: list[Row] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            span = list(range(i2 - i1))
            if len(span) > 2 * context + 1:
                keep_head = span[:context] if rows else []
                keep_tail = span[-context:] if i2 < len(a) or j2 < len(b) else []
                skipped = len(span) - len(keep_head) - len(keep_tail)
                for k in keep_head:
                    rows.append(Row("equal", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k]))
                rows.append(Row("skip", None, f"{skipped} unchanged lines", None, ""))
                for k in keep_tail:
                    rows.append(Row("equal", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k]))
            else:
                for k in span:
                    rows.append(Row("equal", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k]))
        else:
            pairs = zip_longest(range(i1, i2), range(j1, j2))
            for i, j in pairs:
                rows.append(
                    Row(
                        tag
                        if i is not None and j is not None
                        else ("delete" if j is None else "insert"),
                        None if i is None else i + 1,
                        "" if i is None else a[i],
                        None if j is None else j + 1,
                        "" if j is None else b[j],
                    )
                )
    return rows


def _unified(old: str, new: str, old_name: str, new_name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), old_name, new_name
        )
    )


def _pretty(value: Any) -> str:
    return "" if value is None else json.dumps(value, indent=2, sort_keys=True)


def diff_definitions(old: dict[str, Any], new: dict[str, Any]) -> Diff:
    """What changed from ``old`` to ``new``: title, description, schemas, and per step."""
    fields = []
    for key, label in (
        ("title", "Title"),
        ("description", "Description"),
        ("input_schema", "Input schema"),
        ("output_schema", "Output schema"),
        ("concurrency", "Runs at once"),
        ("retention_days", "Keep finished runs (days)"),
        ("notify", "Notifications"),
    ):
        before, after = old.get(key), new.get(key)
        if (before or None) != (after or None):
            a = before if isinstance(before, str) else _pretty(before)
            b = after if isinstance(after, str) else _pretty(after)
            # An absent value diffs as nothing at all, not as one empty line.
            unified = _unified(
                a + "\n" if a else "",
                b + "\n" if b else "",
                f"{label} (before)" if a else "/dev/null",
                f"{label} (after)" if b else "/dev/null",
            )
            fields.append(FieldChange(label, a, b, side_by_side(a, b), unified))

    old_steps = {s["name"]: (i, s) for i, s in enumerate(old.get("steps") or [])}
    new_steps = {s["name"]: (i, s) for i, s in enumerate(new.get("steps") or [])}
    common_old = [n for n in old_steps if n in new_steps]
    common_new = [n for n in new_steps if n in old_steps]
    changes: list[StepChange] = []
    for name, (position, step) in new_steps.items():
        if name not in old_steps:
            code = step.get("code") or ""
            changes.append(
                StepChange(
                    name,
                    "added",
                    new_position=position,
                    code=side_by_side("", code),
                    unified=_unified("", code, "/dev/null", name),
                )
            )
            continue
        old_position, before = old_steps[name]
        change = StepChange(
            name,
            "unchanged",
            moved=common_old.index(name) != common_new.index(name),
            old_position=old_position,
            new_position=position,
        )
        a, b = before.get("code") or "", step.get("code") or ""
        if a != b:
            change.code = side_by_side(a, b)
            change.unified = _unified(a, b, f"{name} (before)", f"{name} (after)")
        for key in (*STEP_SETTINGS, "kind", "config"):
            was = before.get(key, STEP_DEFAULTS.get(key))
            now = step.get(key, STEP_DEFAULTS.get(key))
            if was != now:
                change.settings.append((key, was, now))
        if change.code or change.settings:
            change.status = "changed"
        changes.append(change)
    for name, (position, step) in old_steps.items():
        if name not in new_steps:
            code = step.get("code") or ""
            changes.append(
                StepChange(
                    name,
                    "removed",
                    old_position=position,
                    code=side_by_side(code, ""),
                    unified=_unified(code, "", name, "/dev/null"),
                )
            )
    return Diff(fields, changes)
