"""Editor views of versions: publishing or discarding the draft, the versions list, one
version, the comparison of two, deleting one, and definition files in and out."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import drafts
from ..auth import role
from ..definitions import export_definition, save_workflow
from ..errors import ConsoleError, ValidationFailed
from ..jsonbody import parse_json
from ..main.forms import EmptyForm
from ..models import Workflow, WorkflowVersion
from ..runs import delete_version, get_version
from ..serialize import active_runs_by_version
from . import bp
from .forms import ImportForm, PublishForm, RevisionForm
from .routes import actor, load, problem_text

# ---------------------------------------------------------------------------- publishing


@bp.post("/workflows/<name>/publish")
@role("editor")
def publish(name: str) -> Any:
    workflow = load(name)
    form = PublishForm()
    if not form.validate_on_submit():
        flash("The publish form was not valid; reload the page.", "error")
        return redirect(url_for("editor.workflow", name=name))
    try:
        version, published = drafts.publish_draft(
            workflow, form.base_revision(), form.note.data or "", actor()
        )
    except ConsoleError as exc:
        flash(problem_text(exc), "error")
        return redirect(url_for("editor.workflow", name=name))
    if published and version is not None:
        flash(f"Published {version.label}. New runs use it; running ones keep theirs.", "info")
    else:
        flash("The draft is identical to the latest version: nothing was published.", "info")
    return redirect(url_for("editor.workflow", name=name))


@bp.post("/workflows/<name>/discard")
@role("editor")
def discard(name: str) -> Any:
    workflow = load(name)
    form = RevisionForm()
    try:
        drafts.discard_draft(workflow, form.base_revision(), actor())
    except drafts.StaleDraft as stale:
        flash(stale.message, "error")
    else:
        flash("The draft was discarded.", "info")
    return redirect(url_for("editor.workflow", name=name))


# ------------------------------------------------------------------------------ versions


def versions_context(workflow: Workflow) -> dict[str, Any]:
    counts = active_runs_by_version(workflow)
    return {
        "workflow": workflow,
        "versions": list(reversed(workflow.live_versions)),
        "counts": counts,
        "tab": "versions",
        "can_edit": current_user.has_role("editor"),
        "form": RevisionForm(),
    }


@bp.get("/workflows/<name>/versions")
@role("viewer")
def versions(name: str) -> Any:
    return render_template("editor/versions.html", **versions_context(load(name)))


def _version(workflow: Workflow, label: str) -> WorkflowVersion:
    try:
        return get_version(workflow, label)
    except ConsoleError:
        abort(404)


@bp.get("/workflows/<name>/versions/<label>")
@role("viewer")
def version(name: str, label: str) -> Any:
    workflow = load(name)
    chosen = _version(workflow, label)
    counts = active_runs_by_version(workflow)
    return render_template(
        "editor/version.html",
        workflow=workflow,
        version=chosen,
        definition=chosen.definition,
        active=counts.get(chosen.id, 0),
        tab="versions",
    )


@bp.get("/workflows/<name>/compare")
@role("viewer")
def compare(name: str) -> Any:
    """Two versions (or a version and the draft) side by side."""
    workflow = load(name)
    live = workflow.live_versions
    if not live:
        flash("Nothing to compare yet: publish a first version.", "info")
        return redirect(url_for("editor.versions", name=name))
    choices = [v.label for v in reversed(live)]
    if workflow.draft is not None:
        choices.insert(0, "draft")
    new_label = request.args.get("new") or choices[0]
    default_old = choices[1] if len(choices) > 1 else choices[0]
    old_label = request.args.get("old") or default_old

    def definition_of(label: str) -> dict[str, Any]:
        if label == "draft" and workflow.draft is not None:
            return drafts.as_draft(workflow.draft)
        return _version(workflow, label).definition

    diff = drafts.diff_definitions(definition_of(old_label), definition_of(new_label))
    return render_template(
        "editor/compare.html",
        workflow=workflow,
        diff=diff,
        old=old_label,
        new=new_label,
        choices=choices,
        tab="versions",
    )


@bp.post("/workflows/<name>/versions/<label>/delete")
@role("editor")
def delete_version_view(name: str, label: str) -> Any:
    workflow = load(name)
    chosen = _version(workflow, label)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        delete_version(chosen)
    except ConsoleError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Version {label} was deleted.", "info")
    return redirect(url_for("editor.versions", name=name))


# ------------------------------------------------------------------------ import/export


def _read_upload(form: ImportForm) -> Any:
    raw = form.file.data.read()
    try:
        return parse_json(raw)
    except ValueError as exc:  # UnicodeDecodeError too
        raise ValidationFailed(f"The file is not JSON: {exc}") from None


def _import(form: ImportForm, name: str | None) -> Workflow:
    data = _read_upload(form)
    if not isinstance(data, dict):
        raise ValidationFailed("A workflow definition must be a JSON object")
    if form.mode.data == "draft":
        workflow = drafts.import_draft(data, name, actor())
        if data.get("schedules"):
            flash(
                "Schedules in the file are not part of a draft: set them on the Schedules "
                "tab, or import with publish.",
                "info",
            )
        flash("Imported as the draft: review it and publish.", "info")
        return workflow
    workflow, version, published = save_workflow(
        data, name, publish=True, note=form.note.data or "Imported", user=actor()
    )
    if published and version is not None:
        flash(f"Imported and published {version.label}.", "info")
    else:
        flash("The file is identical to the latest version: nothing was published.", "info")
    return workflow


@bp.post("/workflows/import")
@role("editor")
def import_new() -> Any:
    form = ImportForm()
    if not form.validate_on_submit():
        flash("Choose a definition file (JSON) to import.", "error")
        return redirect(url_for("editor.index"))
    try:
        workflow = _import(form, None)
    except ConsoleError as exc:
        flash(f"Not imported. {problem_text(exc)}", "error")
        return redirect(url_for("editor.index"))
    return redirect(url_for("editor.workflow", name=workflow.name))


@bp.post("/workflows/<name>/import")
@role("editor")
def import_into(name: str) -> Any:
    load(name)
    form = ImportForm()
    if not form.validate_on_submit():
        flash("Choose a definition file (JSON) to import.", "error")
        return redirect(url_for("editor.workflow", name=name))
    try:
        _import(form, name)
    except ConsoleError as exc:
        flash(f"Not imported. {problem_text(exc)}", "error")
    return redirect(url_for("editor.workflow", name=name))


@bp.get("/workflows/<name>/export")
@role("viewer")
def export(name: str) -> Any:
    """The latest version (or ``?source=draft``, or a version label) as a definition file."""
    workflow = load(name)
    source = request.args.get("source") or "latest"
    if source == "draft":
        if workflow.draft is None:
            abort(404)
        data = dict(drafts.as_draft(workflow.draft), version=None)
        filename = f"{name}-draft.json"
    else:
        chosen = workflow.latest_version if source == "latest" else _version(workflow, source)
        if chosen is None:
            abort(404)
        data = export_definition(chosen)
        filename = f"{name}-{chosen.label}.json"
    return Response(
        json.dumps(data, indent=2) + "\n",
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
