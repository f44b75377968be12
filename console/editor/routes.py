"""Editor views: validate the form, call ``console.drafts`` / ``console.steptests`` /
``console.runs``, then answer a partial (htmx) or redirect (plain forms). Here: the workflows,
the step cards and the input; publishing, versions and files are in ``versions``, the run form
in ``run_form``, step tests in ``step_tests``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import (
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select

from .. import drafts, steptests
from ..auth import role
from ..definitions import snake_case
from ..errors import Conflict, ConsoleError
from ..extensions import db
from ..models import ACTIVE, Run, Workflow
from ..web import form_error_text, is_htmx
from ..webhooks import webhook_url
from . import bp
from .cards import (
    Card,
    card_for,
    example_input,
    kinds,
    new_step,
    read_card,
    workflow_sample,
)
from .forms import (
    NAME_MESSAGE,
    AddStepForm,
    ImportForm,
    InputForm,
    MoveForm,
    NewWorkflowForm,
    OrderForm,
    RevisionForm,
    StepForm,
    fields_from_schema,
    schema_from_fields,
    schema_from_raw,
)

# ------------------------------------------------------------------------------- helpers


def load(name: str) -> Workflow:
    workflow = db.session.scalar(select(Workflow).filter_by(name=name))
    if workflow is None:
        abort(404)
    return workflow


def actor() -> str:
    return str(current_user.email)


def step_index(definition: dict[str, Any], step: str, workflow: Workflow | None = None) -> int:
    for index, item in enumerate(definition["steps"]):
        if item["name"] == step:
            return index
    # A step someone else renamed or deleted since this page was drawn: a conflict to reload
    # for, not a missing page.
    posted = request.form.get("revision", "")
    if workflow is not None and posted.isdigit() and int(posted) != workflow.draft_revision:
        message = f"There is no step {step!r} any more. {drafts.StaleDraft.of(workflow).message}"
        abort(make_response(refused(workflow, message)))
    abort(404)


def editor_context(workflow: Workflow, **extra: Any) -> dict[str, Any]:
    definition = drafts.editable_definition(workflow)
    overrides: dict[str, Card] = extra.pop("overrides", {})
    published = published_steps(workflow)
    cards = [
        overrides.get(step["name"])
        or card_for(workflow, definition, index, collapsed=published.get(step["name"]) == step)
        for index, step in enumerate(definition["steps"])
    ]
    context = {
        "workflow": workflow,
        "definition": definition,
        "cards": cards,
        "kinds": kinds(),
        "revision": workflow.draft_revision,
        "can_edit": current_user.has_role("editor"),
        "tab": "editor",
        "trigger": trigger_info(workflow, definition),
        "input_form": input_form_for(definition),
        "problems": [],
        "test_input": workflow_sample(workflow, definition),
        "recent_runs": steptests.recent_runs(workflow),
    }
    context.update(extra)
    return context


def published_steps(workflow: Workflow) -> dict[str, dict[str, Any]]:
    """The latest published version's steps by name: a card showing one unchanged starts as
    its outline."""
    latest = workflow.latest_version
    return {step["name"]: step for step in (latest.definition["steps"] if latest else [])}


def trigger_info(workflow: Workflow, definition: dict[str, Any]) -> dict[str, Any]:
    base = current_app.config["BASE_URL"]
    latest = workflow.latest_version
    schema = latest.definition.get("input_schema") if latest else definition.get("input_schema")
    body = json.dumps(example_input(schema))
    api = (
        f"curl -X POST {base}/api/workflows/{workflow.name}/runs \\\n"
        '  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\\n'
        f"  -d '{json.dumps({'input': example_input(schema)})}'"
    )
    info: dict[str, Any] = {"api": api, "published": latest is not None}
    hook = webhook_url(workflow) if current_user.has_role("editor") else None
    if hook is not None:
        info["webhook"] = (
            f"curl -X POST {hook} \\\n  -H \"Content-Type: application/json\" \\\n  -d '{body}'"
        )
    return info


def render_editor(workflow: Workflow, status: int = 200, **extra: Any) -> Any:
    return render_template("editor/workflow.html", **editor_context(workflow, **extra)), status


def pipeline_response(workflow: Workflow, focus: str | None = None, **extra: Any) -> Any:
    """The pipeline partial for htmx; a redirect to the editor for plain forms."""
    if not is_htmx():
        return redirect(url_for("editor.workflow", name=workflow.name))
    context = editor_context(workflow, focus=focus, **extra)
    return render_template("editor/_pipeline_response.html", **context)


def card_response(
    workflow: Workflow, card: Card, status: int = 200, conflict: drafts.StaleDraft | None = None
) -> Any:
    if not is_htmx():
        if status == 200:
            return redirect(url_for("editor.workflow", name=workflow.name) + f"#step-{card.name}")
        return render_editor(workflow, status, overrides={card.name: card}, conflict=conflict)
    context = {
        "workflow": workflow,
        "card": card,
        "kinds": kinds(),
        "revision": workflow.draft_revision,
        "can_edit": True,
        "conflict": conflict,
        "oob": True,
    }
    return render_template("editor/_card_response.html", **context), status


def refused(workflow: Workflow, message: str, status: int = 409) -> Any:
    """A change the server cannot apply (stale revision, unknown step): say so."""
    if is_htmx():
        return (
            render_template(
                "editor/_draft_status.html", workflow=workflow, conflict_message=message, oob=False
            ),
            status,
            {"HX-Retarget": "#draft-status", "HX-Reswap": "outerHTML"},
        )
    flash(message, "error")
    return redirect(url_for("editor.workflow", name=workflow.name))


# ----------------------------------------------------------------------------- workflows


@bp.get("/workflows")
@role("viewer")
def index() -> Any:
    return workflows_page(NewWorkflowForm())


def workflows_page(form: NewWorkflowForm, status: int = 200) -> Any:
    """The list of workflows with the New workflow form (as typed, with its errors)."""
    workflows = db.session.scalars(select(Workflow).order_by(Workflow.name)).all()
    active = dict(
        db.session.execute(
            select(Run.workflow_id, func.count())
            .where(Run.status.in_(tuple(ACTIVE)))
            .group_by(Run.workflow_id)
        ).all()
    )
    context = {"workflows": workflows, "active": active, "import_form": ImportForm()}
    return render_template("editor/index.html", form=form, **context), status


@bp.post("/workflows")
@role("editor")
def create() -> Any:
    """Create a workflow; refused, the form shows again as typed, errors at their fields."""
    form = NewWorkflowForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            flash(form_error_text(form), "error")
        suggest_name(form)
        return workflows_page(form, 422)
    try:
        workflow = drafts.create_workflow(form.title.data, form.name.data, actor())
    except ConsoleError as exc:
        conflict = isinstance(exc, Conflict)
        if conflict or (form.name.data or "").strip():  # the name typed, or the title's taken
            form.name.errors = [exc.message if conflict else NAME_MESSAGE]
        else:
            form.title.errors = ["No name can be made from this title: give a name."]
        return workflows_page(form, 409 if conflict else 422)
    return redirect(url_for("editor.workflow", name=workflow.name))


def suggest_name(form: NewWorkflowForm) -> None:
    """A name with spaces or capitals: say which would do ("My flow" → my_flow)."""
    typed, slug = (form.name.data or "").strip(), snake_case(form.name.data or "")
    if form.name.errors and slug and slug != typed:
        form.name.errors = [*form.name.errors, f"For example: {slug}"]


@bp.get("/workflows/<name>")
@role("viewer")
def workflow(name: str) -> Any:
    return render_editor(load(name))


# --------------------------------------------------------------------------- step cards


def _draft(workflow: Workflow) -> dict[str, Any]:
    return drafts.editable_definition(workflow)


def _save(workflow: Workflow, definition: dict[str, Any], form: RevisionForm) -> int:
    return drafts.save_draft(workflow, definition, form.base_revision(), actor())


def edit_steps(
    workflow: Workflow, edit: Callable[..., dict[str, Any]], form: RevisionForm, *args: Any
) -> dict[str, Any]:
    """One of ``console.drafts``' step edits, by this person on the revision the page shows.
    A draft saved since (StaleDraft) or steps that no longer match (a Conflict) answer
    ``refused``."""
    try:
        return edit(workflow, *args, base_revision=form.base_revision(), user=actor())
    except Conflict as exc:
        abort(make_response(refused(workflow, exc.message)))


@bp.post("/workflows/<name>/steps")
@role("editor")
def add_step(name: str) -> Any:
    workflow = load(name)
    form = AddStepForm()
    if not form.validate_on_submit():
        return refused(workflow, "Choose a kind of step to add.", 422)
    definition = _draft(workflow)
    taken = {s["name"] for s in definition["steps"]}
    try:
        step = new_step(form.kind.data or "code", taken)
    except KeyError:
        return refused(workflow, f"Unknown step kind {form.kind.data!r}.", 422)
    edit_steps(workflow, drafts.add_step, form, step, form.position.data or 0)
    return pipeline_response(workflow, focus=f"#step-{step['name']} [name=name]")


def posted_card(workflow: Workflow, step: str, form: StepForm) -> tuple[dict[str, Any], int, Any]:
    """The draft, the step's index, and ``read_card``'s reading of the posted card (the step
    as the person has it on the page, saved or not)."""
    definition = _draft(workflow)
    index = step_index(definition, step, workflow)
    others = {s["name"] for i, s in enumerate(definition["steps"]) if i != index}
    return definition, index, read_card(form, definition["steps"][index], request.form, others)


@bp.post("/workflows/<name>/steps/<step>")
@role("editor")
def save_step(name: str, step: str) -> Any:
    workflow = load(name)
    form = StepForm()
    definition, index, (new, errors, code_error, config_form) = posted_card(workflow, step, form)
    card = Card(
        step=new,
        name=step,
        index=index,
        count=len(definition["steps"]),
        errors=errors,
        code_error=code_error,
        kind_form=config_form,
        test=steptests.last_test(workflow.id, step),
        sample_input=request.form.get("sample_input", "{}"),
        input_schema=definition.get("input_schema"),
    )
    has_config_errors = config_form is not None and any(f.errors for f in config_form)
    if errors or code_error or has_config_errors or "csrf_token" in form.errors:
        return card_response(workflow, card, 422)
    definition["steps"][index] = new
    try:
        _save(workflow, definition, form)
    except drafts.StaleDraft as stale:
        card.conflict = stale
        return card_response(workflow, card, 409, conflict=stale)
    saved = card_for(workflow, _draft(workflow), index, saved=True)
    saved.sample_input = card.sample_input
    return card_response(workflow, saved)


@bp.post("/workflows/<name>/steps/<step>/preview")
@role("editor")
def preview_step(name: str, step: str) -> Any:
    """The code a built-in kind's form compiles to (read-only), refreshed as it changes."""
    workflow = load(name)
    definition = _draft(workflow)
    current = definition["steps"][step_index(definition, step)]
    if not current.get("kind"):
        abort(404)
    new, errors, _, config_form = read_card(StepForm(), current, request.form, set())
    problems = [m for f in config_form for m in f.errors] + errors.get("config", [])
    return render_template(
        "editor/_generated.html", name=step, code=new.get("code"), problems=problems
    )


@bp.post("/workflows/<name>/steps/<step>/delete")
@role("editor")
def delete_step(name: str, step: str) -> Any:
    workflow = load(name)
    form = RevisionForm()
    index = step_index(_draft(workflow), step, workflow)
    remaining = edit_steps(workflow, drafts.delete_step, form, step)["steps"]
    focus = f"#step-{remaining[min(index, len(remaining) - 1)]['name']}" if remaining else None
    return pipeline_response(workflow, focus=focus and focus + " .card-title")


@bp.post("/workflows/<name>/steps/<step>/move")
@role("editor")
def move_step(name: str, step: str) -> Any:
    workflow = load(name)
    form = MoveForm()
    step_index(_draft(workflow), step, workflow)
    edit_steps(workflow, drafts.move_step, form, step, form.direction.data)
    button = "move-up" if form.direction.data == "up" else "move-down"
    return pipeline_response(workflow, focus=f"#step-{step} .{button}")


@bp.post("/workflows/<name>/steps/order")
@role("editor")
def order_steps(name: str) -> Any:
    """The order after a drag (SortableJS posts every step's name in its new place)."""
    workflow = load(name)
    form = OrderForm()
    edit_steps(workflow, drafts.order_steps, form, request.form.getlist("order"))
    return pipeline_response(workflow)


@bp.post("/workflows/<name>/steps/<step>/convert")
@role("editor")
def convert_step(name: str, step: str) -> Any:
    """A built-in kind becomes an ordinary code step with the code it generated."""
    workflow = load(name)
    form = RevisionForm()
    step_index(_draft(workflow), step, workflow)
    edit_steps(workflow, drafts.convert_step, form, step)
    return pipeline_response(workflow, focus=f"#step-{step} .card-title")


# --------------------------------------------------------------------------------- input


@bp.post("/workflows/<name>/input")
@role("editor")
def save_input(name: str) -> Any:
    workflow = load(name)
    form = InputForm()
    definition = _draft(workflow)
    form.validate()
    problems = [m for key, ms in form.errors.items() if key != "fields" for m in ms]
    if form.mode.data == "raw":
        schema, more = schema_from_raw(form.raw.data or "")
    else:
        schema, more = schema_from_fields([entry.data for entry in form.fields.entries])
    problems += more
    if problems:
        return input_response(workflow, form, problems, 422)
    definition.update(
        input_schema=schema, title=form.title.data.strip(), description=form.description.data or ""
    )
    definition.update(operations_of(form))
    try:
        _save(workflow, definition, form)
    except drafts.StaleDraft as stale:
        return input_response(workflow, form, [stale.message], 409)
    return input_response(workflow, None, [], 200, saved=True)


def operations_of(form: InputForm) -> dict[str, Any]:
    """The definition's ``concurrency``, ``retention_days`` and ``notify`` from the form."""
    email = [a.strip() for a in (form.notify_email.data or "").split(",") if a.strip()]
    on = ["failed", "suspended"] if form.notify_suspended.data else ["failed"]
    return {
        "concurrency": form.concurrency.data,
        "retention_days": form.retention_days.data,
        "notify": {"on": on, "email": email} if email else None,
    }


def input_form_for(definition: dict[str, Any]) -> InputForm:
    schema = definition.get("input_schema")
    rows = fields_from_schema(schema)
    data = {
        "title": definition.get("title"),
        "description": definition.get("description"),
        "mode": "builder" if rows is not None else "raw",
        "fields": [*(rows or []), {}],
        "raw": json.dumps(schema, indent=2) if schema is not None else "",
        "concurrency": definition.get("concurrency"),
        "retention_days": definition.get("retention_days"),
        "notify_email": ", ".join((definition.get("notify") or {}).get("email") or []),
        "notify_suspended": "suspended" in ((definition.get("notify") or {}).get("on") or []),
    }
    return InputForm(formdata=None, data=data)


def input_response(
    workflow: Workflow, form: InputForm | None, problems: list[str], status: int, saved=False
) -> Any:
    if not is_htmx():
        for problem in problems:
            flash(problem, "error")
        if saved:
            flash("Input and details saved.", "info")
        return redirect(url_for("editor.workflow", name=workflow.name) + "#input")
    if form is None:
        form = input_form_for(_draft(workflow))
    elif not form.fields.entries or form.fields.entries[-1].form.data["name"]:
        form.fields.append_entry()
    return (
        render_template(
            "editor/_input_response.html",
            workflow=workflow,
            input_form=form,
            problems=problems,
            saved=saved,
            revision=workflow.draft_revision,
            can_edit=True,
            definition=_draft(workflow),
            conflict_message=problems[0] if status == 409 else None,
        ),
        status,
    )


def problem_text(exc: ConsoleError) -> str:
    details = "; ".join(
        f"{d.get('path')}: {d.get('message')}" if isinstance(d, dict) else str(d)
        for d in exc.details
    )
    return f"{exc.message}: {details}" if details else exc.message


@bp.app_context_processor
def editor_helpers() -> dict[str, Any]:
    # App-wide: the Schedules page draws the workflow's tab bar (editor/_header.html) too.
    return {
        "has_endpoint": lambda endpoint: endpoint in current_app.view_functions,
        "test_overdue": steptests.overdue,
    }
