"""Testing steps from their cards: "Test this step" (the step as the card shows it, saved or
not) and "Test up to here" (every step up to it, in order) run on a worker with the
workflow's one sample input, or a past run's input and outputs, and the resume_data typed for
steps that suspend or re-run. The result panels poll until they are there."""

from __future__ import annotations

from typing import Any

from flask import abort, make_response, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import SelectField, TextAreaField

from .. import drafts, steptests
from ..auth import role
from ..errors import NotFound
from ..extensions import db
from ..jsonbody import parse_json
from ..models import Run, Workflow
from ..web import is_htmx
from . import bp
from .cards import workflow_sample
from .forms import StepForm
from .routes import actor, load, posted_card

RESUME_FIELD = "resume_data-"  # + the step's name: one per card of a step that suspends


class TestForm(FlaskForm):
    sample_input = TextAreaField("Sample input (JSON)", default="{}")
    from_run = SelectField("Earlier outputs from", choices=[], validate_choice=False)

    def parsed(self) -> Any:
        text = (self.sample_input.data or "").strip() or "{}"
        errors: list[str] = []
        value = json_field(text, errors)
        if errors:
            self.sample_input.errors = errors
            return None
        if value is not None and not isinstance(value, dict):
            self.sample_input.errors = ["The input must be a JSON object, like {}"]
            return None
        return value

    def run(self, workflow: Workflow) -> Run | None:
        """The past run chosen to take the input and earlier outputs from, if any."""
        run = db.session.get(Run, self.from_run.data) if self.from_run.data else None
        if run is not None and run.workflow_id != workflow.id:
            abort(404)
        return run


def json_field(text: str, errors: list[str]) -> Any:
    try:
        return parse_json(text)
    except ValueError as exc:
        errors.append(f"Not valid JSON: {exc}")
        return None


def posted_resume(problems: list[str]) -> dict[str, Any]:
    """The resume_data typed on the cards (blank ones are left out)."""
    resume: dict[str, Any] = {}
    for key, text in request.form.items():
        if key.startswith(RESUME_FIELD) and text.strip():
            errors: list[str] = []
            value = json_field(text, errors)
            if errors:
                problems.append(f"resume_data of {key[len(RESUME_FIELD) :]}: {errors[0]}")
            else:
                resume[key[len(RESUME_FIELD) :]] = value
    return resume


def prepared(name: str, step: str) -> tuple[Workflow, dict[str, Any], Any, Run | None, Any]:
    """The workflow, the draft with this card as posted, the input, the chosen run and the
    resume_data; or the problems to show instead of testing."""
    workflow = load(name)
    test_form = TestForm()
    run = test_form.run(workflow)
    if "sample_input" not in request.form:  # a plain post of the card: no test input posted
        test_form.sample_input.data = workflow_sample(
            workflow, drafts.editable_definition(workflow)
        )
    sample = run.input if run is not None else test_form.parsed()
    definition, index, card = posted_card(workflow, step, StepForm())
    new, errors, code_error, config_form = card
    problems = [m for f in (config_form or []) for m in f.errors]
    problems += [m for key, ms in errors.items() if key != "csrf_token" for m in ms]
    if code_error:
        problems.append(code_error)
    resume = posted_resume(problems)
    if sample is None or problems:
        problems = list(test_form.sample_input.errors) + problems
        page = render_template(
            "editor/_test_result.html", workflow=workflow, test=None, problems=problems, name=step
        )
        abort(make_response(page))
    new["name"] = step  # tests are kept per saved step name
    definition["steps"][index] = new
    return workflow, definition, sample, run, resume


@bp.post("/workflows/<name>/steps/<step>/test")
@role("editor")
def test_step(name: str, step: str) -> Any:
    """Test the step as the card shows it now (saved or not) on a worker."""
    workflow, definition, sample, run, resume = prepared(name, step)
    test = steptests.start_step_test(workflow, definition, step, sample, actor(), resume, run)
    if not is_htmx():
        return redirect(url_for("editor.workflow", name=workflow.name) + f"#step-{step}")
    return render_template("editor/_test_result.html", workflow=workflow, test=test, name=step)


@bp.post("/workflows/<name>/steps/<step>/test-up-to-here")
@role("editor")
def test_up_to_here(name: str, step: str) -> Any:
    """Test every step up to this one, in order, each output feeding the next."""
    workflow, definition, sample, run, resume = prepared(name, step)
    if run is not None:
        resume = {**steptests.run_results(run)[1], **resume}
    tests = steptests.start_chain(workflow, definition, step, sample, actor(), resume)
    if not is_htmx():
        return redirect(url_for("editor.workflow", name=workflow.name) + f"#step-{step}")
    return render_template("editor/_chain_result.html", workflow=workflow, tests=tests, name=step)


@bp.get("/workflows/<name>/tests/<test_id>")
@role("viewer")
def step_test(name: str, test_id: str) -> Any:
    workflow = load(name)
    try:
        test = steptests.get_step_test(workflow, test_id)
    except NotFound:
        abort(404)
    chained = request.args.get("in") == "chain"
    return render_template(
        "editor/_test_result.html",
        workflow=workflow,
        test=test,
        name=test.step_name,
        chained=chained,
    )
