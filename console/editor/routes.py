"""Editor views: validate the form, call ``console.drafts`` / ``console.steptests`` /
``console.runs``, then answer a partial (htmx) or redirect (plain forms)."""

from __future__ import annotations

import json
from typing import Any

from flask import (
    Response,
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
from ..definitions import export_definition, save_workflow
from ..errors import ConsoleError, NotFound, ValidationFailed
from ..extensions import db
from ..jsonbody import parse_json
from ..main.forms import EmptyForm
from ..models import ACTIVE, Run, Workflow, WorkflowVersion
from ..runs import delete_version, get_version, start_run
from ..serialize import active_runs_by_version
from ..webhooks import webhook_url
from . import bp
from .cards import Card, kind_form, kinds, new_step, read_card, sample_text
from .forms import (
    AddStepForm,
    ImportForm,
    InputForm,
    MoveForm,
    NewWorkflowForm,
    OrderForm,
    PublishForm,
    RevisionForm,
    StepForm,
    TestForm,
    fields_from_schema,
    input_from_form,
    run_form_class,
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


def is_htmx() -> bool:
    return bool(request.headers.get("HX-Request"))


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


def card_for(workflow: Workflow, definition: dict[str, Any], index: int, **extra: Any) -> Card:
    step = definition["steps"][index]
    card = Card(
        step=step,
        name=step["name"],
        index=index,
        count=len(definition["steps"]),
        test=steptests.last_test(workflow.id, step["name"]),
        **extra,
    )
    if card.test is not None and "sample_input" not in extra:
        card.sample_input = sample_text(card.test.input)
    if card.is_kind and card.kind_form is None and kinds():
        card.kind_form = kind_form(step)
    return card


def editor_context(workflow: Workflow, **extra: Any) -> dict[str, Any]:
    definition = drafts.editable_definition(workflow)
    overrides: dict[str, Card] = extra.pop("overrides", {})
    cards = [
        overrides.get(step["name"]) or card_for(workflow, definition, index)
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
    }
    context.update(extra)
    return context


def example_input(schema: Any) -> dict[str, Any]:
    samples = {"string": "text", "number": 1.5, "integer": 1, "boolean": True, "object": {}}
    example: dict[str, Any] = {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    for prop, spec in (properties or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        if "default" in spec:
            example[prop] = spec["default"]
        elif spec.get("enum"):
            example[prop] = spec["enum"][0]
        elif spec.get("type") == "array":
            example[prop] = []
        else:
            example[prop] = samples.get(str(spec.get("type")))
    return example


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
    workflows = db.session.scalars(select(Workflow).order_by(Workflow.name)).all()
    active = dict(
        db.session.execute(
            select(Run.workflow_id, func.count())
            .where(Run.status.in_(tuple(ACTIVE)))
            .group_by(Run.workflow_id)
        ).all()
    )
    return render_template(
        "editor/index.html",
        workflows=workflows,
        active=active,
        form=NewWorkflowForm(),
        import_form=ImportForm(),
    )


@bp.post("/workflows")
@role("editor")
def create() -> Any:
    form = NewWorkflowForm()
    if not form.validate_on_submit():
        for field_errors in form.errors.values():
            for message in field_errors:
                flash(message, "error")
        return redirect(url_for("editor.index"))
    try:
        workflow = drafts.create_workflow(form.title.data, form.name.data, actor())
    except ConsoleError as exc:
        flash(_problem_text(exc), "error")
        return redirect(url_for("editor.index"))
    return redirect(url_for("editor.workflow", name=workflow.name))


@bp.get("/workflows/<name>")
@role("viewer")
def workflow(name: str) -> Any:
    return render_editor(load(name))


# --------------------------------------------------------------------------- step cards


def _draft(workflow: Workflow) -> dict[str, Any]:
    return drafts.editable_definition(workflow)


def _save(workflow: Workflow, definition: dict[str, Any], form: RevisionForm) -> int:
    return drafts.save_draft(workflow, definition, form.base_revision(), actor())


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
    position = min(form.position.data or 0, len(definition["steps"]))
    definition["steps"].insert(position, step)
    try:
        _save(workflow, definition, form)
    except drafts.StaleDraft as stale:
        return refused(workflow, stale.message)
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
    definition = _draft(workflow)
    index = step_index(definition, step, workflow)
    del definition["steps"][index]
    try:
        _save(workflow, definition, form)
    except drafts.StaleDraft as stale:
        return refused(workflow, stale.message)
    remaining = definition["steps"]
    focus = f"#step-{remaining[min(index, len(remaining) - 1)]['name']}" if remaining else None
    return pipeline_response(workflow, focus=focus and focus + " .card-title")


@bp.post("/workflows/<name>/steps/<step>/move")
@role("editor")
def move_step(name: str, step: str) -> Any:
    workflow = load(name)
    form = MoveForm()
    definition = _draft(workflow)
    index = step_index(definition, step, workflow)
    target = index - 1 if form.direction.data == "up" else index + 1
    steps = definition["steps"]
    if 0 <= target < len(steps):
        steps[index], steps[target] = steps[target], steps[index]
        try:
            _save(workflow, definition, form)
        except drafts.StaleDraft as stale:
            return refused(workflow, stale.message)
    button = "move-up" if form.direction.data == "up" else "move-down"
    return pipeline_response(workflow, focus=f"#step-{step} .{button}")


@bp.post("/workflows/<name>/steps/order")
@role("editor")
def order_steps(name: str) -> Any:
    """The order after a drag (SortableJS posts every step's name in its new place)."""
    workflow = load(name)
    form = OrderForm()
    definition = _draft(workflow)
    order = request.form.getlist("order")
    by_name = {s["name"]: s for s in definition["steps"]}
    if sorted(order) != sorted(by_name):
        return refused(workflow, "The steps changed since this page was loaded; reload it.")
    if order == list(by_name):
        return pipeline_response(workflow)  # dropped where it was: nothing changes
    definition["steps"] = [by_name[n] for n in order]
    try:
        _save(workflow, definition, form)
    except drafts.StaleDraft as stale:
        return refused(workflow, stale.message)
    return pipeline_response(workflow)


@bp.post("/workflows/<name>/steps/<step>/convert")
@role("editor")
def convert_step(name: str, step: str) -> Any:
    """A built-in kind becomes an ordinary code step with the code it generated."""
    workflow = load(name)
    form = RevisionForm()
    definition = _draft(workflow)
    index = step_index(definition, step, workflow)
    current = definition["steps"][index]
    current.pop("kind", None)
    current.pop("config", None)
    try:
        _save(workflow, definition, form)
    except drafts.StaleDraft as stale:
        return refused(workflow, stale.message)
    return pipeline_response(workflow, focus=f"#step-{step} .card-title")


# ------------------------------------------------------------------------- testing a step


@bp.post("/workflows/<name>/steps/<step>/test")
@role("editor")
def test_step(name: str, step: str) -> Any:
    """Test the step as the card shows it now (saved or not) on a worker."""
    workflow = load(name)
    test_form = TestForm()
    sample = test_form.parsed()
    definition, index, card = posted_card(workflow, step, StepForm())
    new, errors, code_error, config_form = card
    problems = [m for f in (config_form or []) for m in f.errors]
    problems += [m for key, ms in errors.items() if key != "csrf_token" for m in ms]
    if code_error:
        problems.append(code_error)
    if sample is None or problems:
        problems = test_form.sample_input.errors + problems
        return render_template(
            "editor/_test_result.html", workflow=workflow, test=None, problems=problems, name=step
        )
    new["name"] = step  # tests are kept per saved step name
    definition["steps"][index] = new
    test = steptests.start_step_test(workflow, definition, step, sample, actor())
    if not is_htmx():
        return redirect(url_for("editor.workflow", name=workflow.name) + f"#step-{step}")
    return render_template("editor/_test_result.html", workflow=workflow, test=test, name=step)


@bp.get("/workflows/<name>/tests/<test_id>")
@role("viewer")
def step_test(name: str, test_id: str) -> Any:
    workflow = load(name)
    try:
        test = steptests.get_step_test(workflow, test_id)
    except NotFound:
        abort(404)
    return render_template(
        "editor/_test_result.html", workflow=workflow, test=test, name=test.step_name
    )


# ----------------------------------------------------------------- input and publishing


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
    try:
        _save(workflow, definition, form)
    except drafts.StaleDraft as stale:
        return input_response(workflow, form, [stale.message], 409)
    return input_response(workflow, None, [], 200, saved=True)


def input_form_for(definition: dict[str, Any]) -> InputForm:
    schema = definition.get("input_schema")
    rows = fields_from_schema(schema)
    data = {
        "title": definition.get("title"),
        "description": definition.get("description"),
        "mode": "builder" if rows is not None else "raw",
        "fields": [*(rows or []), {}],
        "raw": json.dumps(schema, indent=2) if schema is not None else "",
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
        flash(_problem_text(exc), "error")
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


def _problem_text(exc: ConsoleError) -> str:
    details = "; ".join(
        f"{d.get('path')}: {d.get('message')}" if isinstance(d, dict) else str(d)
        for d in exc.details
    )
    return f"{exc.message}: {details}" if details else exc.message


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


# ------------------------------------------------------------------------------ run form


def _run_form(workflow: Workflow) -> tuple[Any, Any, WorkflowVersion]:
    latest = workflow.latest_version
    if latest is None:
        abort(404)
    form_class, specs = run_form_class(latest.definition.get("input_schema"))
    return form_class(), specs, latest


@bp.get("/workflows/<name>/run")
@role("operator")
def run_form(name: str) -> Any:
    workflow = load(name)
    if workflow.latest_version is None:
        flash("Publish a first version before starting runs.", "info")
        return redirect(url_for("editor.workflow", name=name))
    form, specs, latest = _run_form(workflow)
    return render_template(
        "editor/run.html",
        workflow=workflow,
        form=form,
        version=latest,
        problems=[],
        tab="run",
        required={spec.field for spec in specs if spec.required},
    )


@bp.post("/workflows/<name>/run")
@role("operator")
def start(name: str) -> Any:
    workflow = load(name)
    form, specs, latest = _run_form(workflow)
    problems: list[str] = []
    if form.validate_on_submit():
        value = input_from_form(form, specs)
        if value is not None:
            try:
                run, _ = start_run(workflow, value, version=latest.label, user=actor())
            except ValidationFailed as exc:
                problems = _attach_problems(form, specs, exc.details)
            else:
                return redirect(url_for("main.run_page", run_id=run.id))
    elif form.errors:
        problems = [m for ms in form.errors.values() for m in ms]
    return (
        render_template(
            "editor/run.html",
            workflow=workflow,
            form=form,
            version=latest,
            problems=problems,
            tab="run",
            required={spec.field for spec in specs if spec.required},
        ),
        422,
    )


def _attach_problems(form: Any, specs: list[Any], details: list[Any]) -> list[str]:
    """Schema problems under the field they belong to; the rest for the top of the form."""
    by_prop = {spec.prop: getattr(form, spec.field) for spec in specs}
    rest = []
    for detail in details:
        path = str(detail.get("path", "/")) if isinstance(detail, dict) else "/"
        message = detail.get("message", str(detail)) if isinstance(detail, dict) else str(detail)
        head = path.strip("/").split("/")[0]
        if head in by_prop:
            by_prop[head].errors = [*list(by_prop[head].errors or []), message]
        elif len(specs) == 1 and specs[0].kind == "json":
            getattr(form, specs[0].field).errors.append(f"{path}: {message}")
        else:
            rest.append(message if path == "/" else f"{path}: {message}")
    return rest


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
        flash(f"Not imported. {_problem_text(exc)}", "error")
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
        flash(f"Not imported. {_problem_text(exc)}", "error")
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


@bp.context_processor
def editor_helpers() -> dict[str, Any]:
    # The Schedules tab links to a blueprint built in parallel; show it once it exists.
    return {
        "has_endpoint": lambda endpoint: endpoint in current_app.view_functions,
        "test_overdue": steptests.overdue,
    }
