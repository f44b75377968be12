"""Testing steps in context from the editor: "Test up to here" (a chain of step tests, each
output feeding the next), the workflow's one sample input from the input schema, the
resume_data of steps that suspend, and a past run's input and outputs. Tests are worked
in-process on the test queue."""

from __future__ import annotations

import json

from sqlalchemy import select

from console import drafts
from console import runs as domain
from console.extensions import db
from console.models import StepTest, Workflow
from tests.conftest import run_status
from tests.support import code, step
from tests.test_editor import Editor, draft_of, work_tests

ASK = code(
    "links = ctx.flow.suspend(timeout=60)\n"
    "ctx.send_email(to='boss@example.com', subject='Approve?', text=links.resume_url)\n"
    "return {'asked': ctx.steps.fetch.output['job']}"
)
AFTER = code(
    "return {'job': ctx.steps.fetch.output['job'], 'decision': "
    "(ctx.steps.ask.resume_data or {}).get('decision'), 'who': ctx.input['who']}"
)
SCHEMA = {
    "type": "object",
    "properties": {
        "who": {"type": "string", "examples": ["Ada"]},
        "count": {"type": "integer", "default": 3},
    },
}


def build(define, name="ctxwf"):
    return define(
        name,
        [
            step("fetch", "return {'job': 'job-' + ctx.input['who']}"),
            {"name": "ask", "code": ASK},
            {"name": "after", "code": AFTER},
        ],
        input_schema=SCHEMA,
    )


def card_fields(name: str, step_name: str, **extra):
    db.session.expire_all()
    workflow = db.session.scalar(select(Workflow).filter_by(name=name))
    steps = (drafts.editable_definition(workflow))["steps"]
    current = next(s for s in steps if s["name"] == step_name)
    return {
        "name": step_name,
        "retries": 0,
        "retry_delay": 5,
        "timeout": 900,
        "code": current["code"],
        **extra,
    }


def step_tests_of(step_name: str) -> list[StepTest]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(StepTest).filter_by(step_name=step_name).order_by(StepTest.created_at)
        )
    )


def test_sample_input_is_one_per_workflow_from_the_schema(app, define):
    editor = Editor(app, "ed@example.com")
    build(define)
    html = editor.page("/workflows/ctxwf")
    # One test input above the steps, from the schema's examples and defaults; no per-card ones.
    assert html.count('name="sample_input"') == 1
    sample = html.split('id="test-sample"')[1].split("</textarea>")[0]
    assert "&#34;who&#34;: &#34;Ada&#34;" in sample and "&#34;count&#34;: 3" in sample
    # Only the step that suspends has a resume_data field.
    assert 'name="resume_data-ask"' in html and 'name="resume_data-fetch"' not in html
    assert "Test up to here" in html


def test_test_up_to_here_chains_the_earlier_steps_with_resume_data(app, define):
    editor = Editor(app, "ed@example.com")
    build(define)
    started = editor.post(
        "/workflows/ctxwf/steps/after/test-up-to-here",
        card_fields(
            "ctxwf",
            "after",
            sample_input='{"who": "Bo"}',
            **{"resume_data-ask": '{"decision": "approve"}'},
        ),
    )
    html = started.get_data(as_text=True)
    assert started.status_code == 200, html
    assert "Tested up to" in html and html.count('hx-trigger="every') == 3
    work_tests(app)
    fetch, ask, after = (
        step_tests_of("fetch")[-1],
        step_tests_of("ask")[-1],
        step_tests_of("after")[-1],
    )
    assert fetch.output == {"job": "job-Bo"}
    assert ask.status == "completed" and ask.output == {"asked": "job-Bo"}
    notes = "\n".join(ask.notes)
    assert "ctx.flow.suspend was called" in notes and "emails are not sent" in notes
    assert after.output == {"job": "job-Bo", "decision": "approve", "who": "Bo"}
    polled = editor.page(f"/workflows/ctxwf/tests/{after.id}?in=chain")
    assert "completed" in polled and "approve" in polled and f'id="chain-{after.id}"' in polled
    assert "resume_data given to: ask" in polled

    # The card now shows the resume_data it was tested with; a single test of the last step
    # reuses the chain's outputs and that resume_data.
    page = editor.page("/workflows/ctxwf")
    assert "{&#34;decision&#34;: &#34;approve&#34;}</textarea>" in page
    editor.post(
        "/workflows/ctxwf/steps/after/test",
        card_fields("ctxwf", "after", sample_input='{"who": "Cy"}'),
    )
    work_tests(app)
    assert step_tests_of("after")[-1].output == {
        "job": "job-Bo",
        "decision": "approve",
        "who": "Cy",
    }


def test_a_failing_step_stops_the_chain(app, define):
    editor = Editor(app, "ed@example.com")
    build(define)
    editor.post(
        "/workflows/ctxwf/steps/after/test-up-to-here",
        card_fields("ctxwf", "after", sample_input="{}"),  # no "who": fetch raises KeyError
    )
    work_tests(app)
    assert (
        step_tests_of("fetch")[-1].status == "failed"
        and "KeyError" in step_tests_of("fetch")[-1].error
    )
    assert step_tests_of("ask")[-1].error == "Not executed: the earlier step 'fetch' failed."
    assert step_tests_of("after")[-1].status == "failed"


def test_a_test_can_use_a_past_runs_input_and_outputs(app, define, work, api, client):
    editor = Editor(app, "ed@example.com")
    workflow = build(define)
    run, _ = domain.start_run(workflow, {"who": "Run"})
    work(until=lambda: run_status(run.id) == "suspended")
    links = api.get(f"/api/runs/{run.id}").json["links"]
    client.post(links["resume_url"].replace("http://console.test", ""), json={"decision": "no"})
    work()
    assert run_status(run.id) == "completed"
    page = editor.page("/workflows/ctxwf")
    assert f'<option value="{run.id}">' in page
    editor.post(
        "/workflows/ctxwf/steps/after/test",
        card_fields("ctxwf", "after", sample_input="{}", from_run=run.id),
    )
    work_tests(app)
    test = step_tests_of("after")[-1]
    assert test.input == {"who": "Run"}
    assert test.output == {"job": "job-Run", "decision": "no", "who": "Run"}
    assert json.dumps(test.steps["@resume_data"]) == '{"ask": {"decision": "no"}}'


def test_bad_resume_data_is_not_tested(app, define):
    editor = Editor(app, "ed@example.com")
    build(define)
    refused = editor.post(
        "/workflows/ctxwf/steps/after/test-up-to-here",
        card_fields("ctxwf", "after", **{"resume_data-ask": "{nope"}),
    )
    assert "Not tested" in refused.get_data(True) and "resume_data of ask" in refused.get_data(True)
    assert step_tests_of("fetch") == []


def test_published_unchanged_steps_start_as_outlines(app, define):
    editor = Editor(app, "ed@example.com")
    build(define)
    editor.save("ctxwf", "fetch", code=code("return {'job': 'changed'}"))
    html = editor.page("/workflows/ctxwf")
    ask = html.split('id="step-ask"')[1].split("</li>")[0]
    fetch = html.split('id="step-fetch"')[1].split('id="step-ask"')[0]
    assert "outlined" in html.split('id="step-ask"')[0].rsplit("<li", 1)[1]
    assert 'aria-expanded="false"' in ask and 'id="body-ask" hidden' in ask
    assert 'aria-expanded="true"' in fetch and 'id="body-fetch" hidden' not in fetch
    assert "Outline all" in html and "Expand all" in html
    editor.add("ctxwf", position=3)
    assert [s["name"] for s in draft_of("ctxwf")["steps"]][-1] == "step_4"


POLL = code(
    "if ctx.run.callback_request is not None:\n"
    "    return {'woken_with': ctx.run.callback_request['json'], 'runs': ctx.run.runs}\n"
    "ctx.flow.rerun(60)\n"
    "return {'runs': ctx.run.runs}"
)


def test_a_step_that_reruns_is_tested_with_its_callback(app, define):
    """The resume_data / callback field of a re-running step: its test is the execution the
    rerun's resume link woke, with the value as ctx.run.callback_request's JSON body; left
    blank, the test is the first execution, whose rerun is reported."""
    editor = Editor(app, "ed@example.com")
    define("polls", [{"name": "poll", "code": POLL}])
    html = editor.page("/workflows/polls")
    assert 'name="resume_data-poll"' in html and "resume_data / callback" in html
    fields = card_fields("polls", "poll", sample_input="{}")
    answer = editor.post("/workflows/polls/steps/poll/test", fields)
    assert answer.status_code == 200, answer.get_data(True)
    work_tests(app)
    first = step_tests_of("poll")[-1]
    assert first.status == "completed" and first.output == {"runs": 1}
    answer = editor.post(
        "/workflows/polls/steps/poll/test", {**fields, "resume_data-poll": '{"status": "done"}'}
    )
    assert answer.status_code == 200, answer.get_data(True)
    work_tests(app)
    woken = step_tests_of("poll")[-1]
    assert woken.status == "completed", woken.error
    assert woken.output == {"woken_with": {"status": "done"}, "runs": 2}
    assert any("ctx.run.callback_request" in note for note in woken.notes)
