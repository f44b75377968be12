"""The Re-run dialog, on the run page and on the card of a finished run: one form, one route.

``GET`` answers the form (the dialog's body to htmx, a page of its own without JavaScript)
with the plan of its defaults; ``POST`` with ``preview=1`` answers the plan of what is chosen
(the dry run: ``domain.rerun_plan``, which creates nothing), and without it starts the re-run
(``domain.rerun_run``, the same plan) and sends the browser to the new run."""

from __future__ import annotations

import json
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from .. import runs as domain
from ..auth import role
from ..errors import ConsoleError, NotFound, ValidationFailed
from ..models import TERMINAL, Run
from ..web import form_error_text, is_htmx
from . import bp
from .forms import RerunForm
from .routes import RUN_ID_RE

# Where a problem's path (an API detail) is shown in the form; every other path is one of
# the input's own (its schema's), shown at the input.
FIELD_OF = {"/from_step": "from_step", "/smart": "mode", "/version": "version"}
FIELDS = ("mode", "from_step", "version", "input", "form")


def load_run(run_id: str) -> Run:
    if not RUN_ID_RE.match(run_id):
        abort(404)
    try:
        return domain.get_run(run_id)
    except NotFound:
        abort(404)


def rerun_form(run: Run, formdata: Any = None) -> RerunForm:
    form = RerunForm(formdata=formdata) if formdata is not None else RerunForm(formdata=None)
    form.from_step.choices = [SelectChoice(s["name"], s["name"]) for s in run.version.steps]
    labels = [v.label for v in reversed(run.workflow.live_versions)]
    form.version.choices = [
        SelectChoice("original", f"original ({run.version.label})"),
        SelectChoice("latest", f"latest ({labels[0]})" if labels else "latest"),
    ] + [SelectChoice(label, label) for label in labels]
    if formdata is None:
        form.input.data = json.dumps(run.input or {}, indent=2)
    return form


def problems_by_field(exc: ConsoleError) -> dict[str, list[tuple[str, str]]]:
    """A refusal's details as (path, message) under the field that shows them."""
    found: dict[str, list[tuple[str, str]]] = {name: [] for name in FIELDS}
    if exc.status == 409 or not exc.details:
        found["form"].append(("", exc.message))
        return found
    for detail in exc.details:
        path = detail.get("path", "")
        field = FIELD_OF.get(path, "input")
        shown = "" if path in FIELD_OF or path in ("/input", "/") else path.removeprefix("/input")
        found[field].append((shown, detail.get("message", "")))
    return found


def plan_of(run: Run, form: RerunForm, dry_run: bool) -> tuple[Any, Any, dict[str, Any]]:
    """(plan, new run or None, problems by field) of what the form asks."""
    no_problems: dict[str, list[tuple[str, str]]] = {name: [] for name in FIELDS}
    try:
        body = form.request_body(dry_run)
    except ValueError as exc:
        return None, None, {**no_problems, "input": [("", f"The input is not valid JSON: {exc}")]}
    try:
        rerun = domain.RerunRequest.parse(body)
        if dry_run:
            plan, _, _ = domain.rerun_plan(run, rerun)
            return plan, None, no_problems
        new, plan = domain.rerun_run(run, rerun, str(current_user.email))
        return plan, new, no_problems
    except (ValidationFailed, ConsoleError) as exc:
        return None, None, problems_by_field(exc)


@bp.get("/runs/<run_id>/rerun")
@role("operator")
def rerun_dialog(run_id: str) -> Any:
    """The Re-run form with the plan of its defaults; changes nothing."""
    run = load_run(run_id)
    form = rerun_form(run)
    plan, _, problems = plan_of(run, form, dry_run=True)
    template = "tasks/_rerun_form.html" if is_htmx() else "tasks/rerun.html"
    return render_template(template, run=run, form=form, plan=plan, problems=problems)


@bp.post("/runs/<run_id>/rerun")
@role("operator")
def rerun(run_id: str) -> Any:
    """``preview=1``: the plan (the dry run). Else start the re-run and go to it."""
    run = load_run(run_id)
    form = rerun_form(run, request.form)
    preview = request.form.get("preview") == "1"
    if not form.validate():
        problems: dict[str, list[tuple[str, str]]] = {name: [] for name in FIELDS}
        problems["form"] = [("", form_error_text(form))]
        plan, new = None, None
    else:
        plan, new, problems = plan_of(run, form, dry_run=preview)
    context = {"run": run, "form": form, "plan": plan, "problems": problems}
    if preview and is_htmx():
        return render_template("tasks/_rerun_plan.html", oob=True, **context)
    if preview:  # the form's "Show the plan" button, without JavaScript
        return render_template("tasks/rerun.html", **context)
    if new is None or plan is None:
        status = 200 if is_htmx() else (409 if run.status not in TERMINAL else 422)
        template = "tasks/_rerun_form.html" if is_htmx() else "tasks/rerun.html"
        return render_template(template, **context), status
    reused = len(plan.reused)
    flash(
        f"Re-run of {run.id} started on {plan.version}: {reused} step{'s' * (reused != 1)} "
        f"reused, {len(plan.steps) - reused} to execute.",
        "info",
    )
    target = url_for("tasks.run_page", run_id=new.id)
    if is_htmx():
        return "", 200, {"HX-Redirect": target}
    return redirect(target, 303)
