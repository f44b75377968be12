"""The run form: start a run of the latest version with input typed into fields made from
its input schema."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, url_for

from ..auth import role
from ..errors import ValidationFailed
from ..models import Workflow, WorkflowVersion
from ..runs import start_run
from ..web import form_errors
from . import bp
from .forms import input_from_form, run_form_class
from .routes import actor, load


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
                return redirect(url_for("tasks.run_page", run_id=run.id))
    elif form.errors:
        problems = form_errors(form)
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
