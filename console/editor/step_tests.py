"""Testing a step from its card: the step as the card shows it (saved or not) runs on a
worker with a sample input; the result card polls until it is there."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template, url_for

from .. import steptests
from ..auth import role
from ..errors import NotFound
from ..web import is_htmx
from . import bp
from .forms import StepForm, TestForm
from .routes import actor, load, posted_card


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
