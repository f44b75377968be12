"""The workflow editor through its pages: drafts with revision checks, step cards, the input
builder, publishing, versions and their diff, the run form, import/export, testing a step on
the test queue (worked in-process here), and who may do what."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from flask import Flask, g

from console import drafts
from console.auth import create_user
from console.errors import Conflict, NotFound
from console.extensions import db
from console.models import Run, StepTest, Workflow
from tests.support import code, csrf_token, log_in, step

HX = {"HX-Request": "true"}


class Editor:
    """A logged-in person using the editor pages through the test client."""

    def __init__(self, app: Flask, email: str, role: str = "editor") -> None:
        create_user(email, role, "pass-12345")
        # The fixture keeps one app context, whose ``g`` caches the last CSRF token made; a
        # second client must get one of its own.
        g.pop("csrf_token", None)
        self.client = app.test_client()
        self.email = email
        self.token = log_in(self.client, email, "pass-12345")

    def page(self, path: str) -> str:
        response = self.client.get(path)
        assert response.status_code == 200, response.status_code
        return response.get_data(as_text=True)

    def revision(self, name: str) -> int:
        html = self.page(f"/workflows/{name}")
        return int(re.search(r'id="draft-revision" name="revision" value="(\d+)"', html).group(1))

    def post(self, path: str, data: dict[str, Any] | None = None, htmx: bool = True, **kw: Any):
        body = {"csrf_token": self.token, **(data or {})}
        return self.client.post(path, data=body, headers=HX if htmx else {}, **kw)

    def create(self, title: str, name: str = "") -> str:
        response = self.post("/workflows", {"title": title, "name": name}, htmx=False)
        assert response.status_code == 302, response.get_data(as_text=True)
        return response.headers["Location"].rsplit("/", 1)[1]

    def add(self, name: str, kind: str = "code", position: int = 0) -> Any:
        response = self.post(
            f"/workflows/{name}/steps",
            {"kind": kind, "position": position, "revision": self.revision(name)},
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response

    def save(self, workflow: str, step: str, /, revision: int | None = None, **fields: Any):
        data = {
            "name": step,
            "retries": 0,
            "retry_delay": 5,
            "timeout": 900,
            "revision": self.revision(workflow) if revision is None else revision,
            **fields,
        }
        return self.post(f"/workflows/{workflow}/steps/{step}", data)


def draft_of(name: str) -> dict[str, Any] | None:
    db.session.expire_all()
    db.session.commit()
    workflow = db.session.scalar(db.select(Workflow).filter_by(name=name))
    return workflow.draft


def step_names(name: str) -> list[str]:
    return [s["name"] for s in draft_of(name)["steps"]]


@pytest.fixture
def editor(app: Flask) -> Editor:
    return Editor(app, "ed@example.com")


# ------------------------------------------------------------------- list and building


def test_the_list_says_what_to_do_and_creates_a_workflow(app, editor):
    html = editor.page("/workflows")
    assert "No workflows yet" in html and "New workflow" in html
    name = editor.create("Onboard customer")
    assert name == "onboard_customer"
    html = editor.page("/workflows")
    assert "Onboard customer" in html and "unpublished changes" in html
    page = editor.page(f"/workflows/{name}")
    assert "No steps yet" in page
    assert f"/api/workflows/{name}/runs" in page and "Authorization: Bearer" in page
    assert "http://console.test/hooks/onboard_customer/" in page  # the webhook, for editors
    again = editor.post("/workflows", {"title": "Onboard customer"}, htmx=False)
    assert again.status_code == 409
    assert "already exists" in again.get_data(as_text=True)


def test_a_name_with_spaces_is_an_error_at_the_name_and_the_form_keeps_what_was_typed(editor):
    refused = editor.post("/workflows", {"title": "My flow", "name": "My flow"}, htmx=False)
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    error = re.search(r'<p class="field-error" id="name-error" role="alert">([^<]*)</p>', html)
    assert error and "Lower-case letters" in error.group(1) and "For example: my_flow" in error[1]
    assert 'aria-describedby="name-error"' in html and 'aria-invalid="true"' in html
    assert 'value="My flow"' in html  # both fields keep what was typed
    assert html.count('value="My flow"') == 2
    assert 'class="flash error"' not in html  # no banner
    assert editor.create("My flow", "my_flow") == "my_flow"


def test_build_code_steps_and_a_syntax_error_is_shown_at_its_line(app, editor):
    name = editor.create("Greet")
    editor.add(name)
    assert step_names(name) == ["step_1"]
    saved = editor.save(name, "step_1", code=code("return {'hello': ctx.input['who']}"))
    assert saved.status_code == 200 and "Saved to the draft" in saved.get_data(as_text=True)
    assert 'hx-swap-oob="true"' in saved.get_data(as_text=True)  # the draft bar follows
    before = draft_of(name)

    broken = "def run(ctx):\n    x = 1\n    return (x +\n"
    refused = editor.save(name, "step_1", code=broken)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert 'data-error-line="3"' in html or 'data-error-line="4"' in html
    assert re.search(r"line \d: ", html) and "Not saved" in html
    assert "return (x +" in html  # the person's text is kept on the page
    assert draft_of(name) == before  # nothing saved

    no_run = editor.save(name, "step_1", code="def main(ctx):\n    return 1\n")
    assert no_run.status_code == 422 and "does not define run(ctx)" in no_run.get_data(True)
    assert draft_of(name) == before


def test_rename_settings_and_duplicate_names(app, editor):
    name = editor.create("Settings")
    editor.add(name)
    editor.add(name, position=1)
    assert step_names(name) == ["step_1", "step_2"]
    response = editor.save(
        name,
        "step_2",
        name="fetch",
        code=code(),
        retries=3,
        retry_delay=10,
        timeout=60,
        execute_when_recovering="y",
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    step = draft_of(name)["steps"][1]
    assert step["name"] == "fetch"
    assert (step["retries"], step["retry_delay"], step["timeout"]) == (3, 10, 60)
    assert step["execute_when_recovering"] is True
    clash = editor.save(name, "fetch", name="step_1", code=code())
    assert clash.status_code == 422 and "Another step already has this name" in clash.get_data(True)
    bad = editor.save(name, "fetch", code=code(), retries=-1, timeout=0)
    assert bad.status_code == 422
    assert step_names(name) == ["step_1", "fetch"]


def test_reorder_by_drag_and_by_keyboard_persists(app, editor):
    name = editor.create("Order")
    for position in range(3):
        editor.add(name, position=position)
    assert step_names(name) == ["step_1", "step_2", "step_3"]
    dragged = editor.post(
        f"/workflows/{name}/steps/order",
        {"order": ["step_3", "step_1", "step_2"], "revision": editor.revision(name)},
    )
    assert dragged.status_code == 200
    assert step_names(name) == ["step_3", "step_1", "step_2"]
    moved = editor.post(
        f"/workflows/{name}/steps/step_2/move",
        {"direction": "up", "revision": editor.revision(name)},
    )
    assert moved.status_code == 200
    assert 'data-focus="#step-step_2 .move-up"' in moved.get_data(as_text=True)
    assert step_names(name) == ["step_3", "step_2", "step_1"]
    editor.post(
        f"/workflows/{name}/steps/step_3/move",
        {"direction": "down", "revision": editor.revision(name)},
        htmx=False,
    )
    assert step_names(name) == ["step_2", "step_3", "step_1"]
    page = editor.page(f"/workflows/{name}")
    assert (
        page.index('id="step-step_2"')
        < page.index('id="step-step_3"')
        < page.index('id="step-step_1"')
    )
    wrong = editor.post(
        f"/workflows/{name}/steps/order",
        {"order": ["step_1", "step_2"], "revision": editor.revision(name)},
    )
    assert wrong.status_code == 409 and step_names(name) == ["step_2", "step_3", "step_1"]
    deleted = editor.post(
        f"/workflows/{name}/steps/step_3/delete", {"revision": editor.revision(name)}
    )
    assert deleted.status_code == 200 and step_names(name) == ["step_2", "step_1"]


def test_a_stale_save_is_refused_naming_who_saved(app, editor):
    other = Editor(app, "other@example.com")
    name = editor.create("Shared")
    editor.add(name)
    seen = editor.revision(name)
    assert other.save(name, "step_1", code=code("return 'theirs'")).status_code == 200
    mine = code("return 'mine'")
    refused = editor.save(name, "step_1", revision=seen, code=mine)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 409
    assert "other@example.com saved this workflow at" in html and "reload" in html
    assert "return &#39;mine&#39;" in html  # kept on the page
    assert "theirs" in draft_of(name)["steps"][0]["code"]
    structural = editor.post(f"/workflows/{name}/steps/step_1/delete", {"revision": seen})
    assert structural.status_code == 409 and "other@example.com saved" in structural.get_data(True)
    published = editor.post(f"/workflows/{name}/publish", {"revision": seen}, htmx=False)
    assert published.status_code == 302
    assert "other@example.com saved this workflow" in editor.page(f"/workflows/{name}")
    assert draft_of(name) is not None  # nothing was published

    # A step someone else deleted since: a conflict to reload for, not "not found".
    editor.add(name, position=1)
    seen = editor.revision(name)
    assert other.post(f"/workflows/{name}/steps/step_2/delete", {"revision": seen}).status_code
    gone = editor.save(name, "step_2", revision=seen, code=mine)
    assert gone.status_code == 409
    assert "There is no step &#39;step_2&#39; any more" in gone.get_data(as_text=True)
    moved = editor.post(
        f"/workflows/{name}/steps/step_2/move", {"revision": seen, "direction": "up"}
    )
    assert moved.status_code == 409
    current = editor.revision(name)
    assert editor.save(name, "nowhere", revision=current, code=mine).status_code == 404


def test_a_draft_saved_through_the_api_makes_an_open_editor_stale(app, editor, make_api):
    name = editor.create("Api shared")
    editor.add(name)
    seen = editor.revision(name)
    api = make_api("editor")
    definition = {"steps": [{"name": "step_1", "code": code("return 'api'")}]}
    saved = api.put(f"/api/workflows/{name}", json={**definition, "publish": False})
    assert saved.status_code == 200, saved.json
    refused = editor.save(name, "step_1", revision=seen, code=code("return 'mine'"))
    assert refused.status_code == 409
    assert "saved this workflow at" in refused.get_data(as_text=True)
    assert "'api'" in draft_of(name)["steps"][0]["code"]


# ----------------------------------------------------------------------- input builder


def test_the_field_builder_writes_json_schema_and_raw_schema_is_checked(app, editor):
    name = editor.create("Inputs")
    rows = {
        "fields-0-name": "email",
        "fields-0-type": "string",
        "fields-0-required": "y",
        "fields-0-description": "Who to greet",
        "fields-1-name": "count",
        "fields-1-type": "integer",
        "fields-1-default": "3",
        "fields-2-name": "plan",
        "fields-2-type": "enum",
        "fields-2-choices": "free, pro",
        "fields-3-name": "tags",
        "fields-3-type": "array:string",
        "fields-3-default": "a, b",
        "fields-4-name": "",
        "fields-4-type": "string",
    }
    response = editor.post(
        f"/workflows/{name}/input",
        {
            "title": "Inputs!",
            "description": "d",
            "mode": "builder",
            "revision": editor.revision(name),
            **rows,
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    draft = draft_of(name)
    assert draft["title"] == "Inputs!"
    assert draft["input_schema"] == {
        "type": "object",
        "properties": {
            "email": {"type": "string", "description": "Who to greet"},
            "count": {"type": "integer", "default": 3},
            "plan": {"type": "string", "enum": ["free", "pro"]},
            "tags": {"type": "array", "items": {"type": "string"}, "default": ["a", "b"]},
        },
        "required": ["email"],
    }
    # The builder shows it back, with a blank row for the next field.
    page = editor.page(f"/workflows/{name}")
    assert 'name="fields-3-name"' in page and 'value="tags"' in page
    assert 'name="fields-4-name"' in page

    bad_default = editor.post(
        f"/workflows/{name}/input",
        {
            "title": "x",
            "mode": "builder",
            "revision": editor.revision(name),
            "fields-0-name": "n",
            "fields-0-type": "integer",
            "fields-0-default": "many",
        },
    )
    assert bad_default.status_code == 422 and "is not a whole number" in bad_default.get_data(True)
    raw = editor.post(
        f"/workflows/{name}/input",
        {
            "title": "x",
            "mode": "raw",
            "raw": '{"type": "objekt"}',
            "revision": editor.revision(name),
        },
    )
    assert raw.status_code == 422 and "Not a valid JSON Schema" in raw.get_data(True)
    assert draft_of(name)["input_schema"]["required"] == ["email"]


# --------------------------------------------------------- publishing, versions, diff


def test_publish_versions_compare_and_delete(app, editor, define):
    name = editor.create("Pub")
    editor.add(name)
    editor.save(name, "step_1", code=code("return 1"))
    refused = editor.post(f"/workflows/{name}/publish", {"revision": 0}, htmx=False)
    assert refused.status_code == 302 and draft_of(name) is not None
    ok = editor.post(
        f"/workflows/{name}/publish",
        {"revision": editor.revision(name), "note": "first"},
        htmx=False,
    )
    assert ok.status_code == 302
    assert "Published v1" in editor.page(f"/workflows/{name}")
    assert draft_of(name) is None
    workflow = db.session.scalar(db.select(Workflow).filter_by(name=name))
    v1 = workflow.latest_version
    assert v1.note == "first" and v1.published_by == "ed@example.com"

    # Edit the published version into a draft: change code and settings, add, move.
    editor.add(name, position=1)
    editor.post(f"/workflows/{name}/publish", {"revision": editor.revision(name)}, htmx=False)
    editor.save(name, "step_1", code=code("x = 2\nreturn x"), retries=2)
    editor.add(name, position=2)
    editor.post(
        f"/workflows/{name}/steps/step_2/move",
        {"direction": "up", "revision": editor.revision(name)},
    )
    compare = editor.page(f"/workflows/{name}/compare?old=v2&new=draft")
    assert "step_3" in compare and "+ added" in compare
    assert "↕ moved from 2 to 1" in compare
    assert "retries" in compare and "x = 2" in compare and "diff-replace" in compare
    editor.post(
        f"/workflows/{name}/publish", {"revision": editor.revision(name), "note": "3"}, htmx=False
    )
    assert "moved from 2 to 1" in editor.page(f"/workflows/{name}/compare?old=v2&new=v3")
    assert "No differences" in editor.page(f"/workflows/{name}/compare?old=v3&new=v3")
    versions = editor.page(f"/workflows/{name}/versions")
    assert "v1" in versions and "v3" in versions and "first" in versions
    assert "Compare with v2" in versions

    # A version with an active run cannot be deleted; without, it can.
    v3 = db.session.scalar(db.select(Workflow).filter_by(name=name)).latest_version
    db.session.add(Run(workflow_id=workflow.id, version_id=v3.id, status="suspended"))
    db.session.commit()
    assert "● 1 active" in editor.page(f"/workflows/{name}/versions")
    editor.post(f"/workflows/{name}/versions/v3/delete", htmx=False)
    assert "is used by active runs" in editor.page(f"/workflows/{name}/versions")
    editor.post(f"/workflows/{name}/versions/v1/delete", htmx=False)
    page = editor.page(f"/workflows/{name}/versions")
    assert "Version v1 was deleted" in page
    assert editor.client.get(f"/workflows/{name}/versions/v1").status_code == 404


def test_publish_refuses_an_invalid_draft_with_its_problems(app, editor):
    name = editor.create("Empty")
    editor.post(f"/workflows/{name}/publish", {"revision": editor.revision(name)}, htmx=False)
    assert "must be a non-empty list of steps" in editor.page(f"/workflows/{name}")
    assert draft_of(name) is not None


def test_discard_returns_to_the_latest_version(app, editor, define):
    define("kept", [("one", code("return 1"))])
    editor.add("kept", position=1)
    assert step_names("kept") == ["one", "step_2"]
    assert "schedules" not in draft_of("kept")
    editor.post("/workflows/kept/discard", {"revision": editor.revision("kept")}, htmx=False)
    assert draft_of("kept") is None
    assert 'id="step-step_2"' not in editor.page("/workflows/kept")


# ------------------------------------------------------------------------ built-in kinds


def test_a_kind_card_shows_its_form_and_code_and_converts_to_code(app, editor):
    name = editor.create("Approve")
    html = editor.page(f"/workflows/{name}")
    assert "Approval by email" in html and "Send email" in html
    added = editor.add(name, kind="approval").get_data(as_text=True)
    assert "config-recipients" in added and "ctx.flow.suspend" in added
    step = draft_of(name)["steps"][0]
    assert step["kind"] == "approval" and step["config"]["recipients"] == "{{ input.approver }}"

    preview = editor.post(
        f"/workflows/{name}/steps/approval/preview",
        {
            "name": "approval",
            "config-recipients": "not-an-address",
            "config-subject": "S",
            "config-message": "M",
            "config-timeout": "2h",
        },
    )
    assert preview.status_code == 200 and "config-" not in preview.get_data(True)
    assert "not-an-address" in preview.get_data(True) or "email" in preview.get_data(True)

    saved = editor.save(
        name,
        "approval",
        **{
            "config-recipients": "boss@example.com",
            "config-subject": "Sign {{ input.doc }}",
            "config-message": "Please",
            "config-timeout": "2h",
        },
    )
    assert saved.status_code == 200, saved.get_data(as_text=True)
    step = draft_of(name)["steps"][0]
    assert (
        step["config"]["subject"] == "Sign {{ input.doc }}" and "boss@example.com" in step["code"]
    )

    bad = editor.save(
        name,
        "approval",
        **{
            "config-recipients": "",
            "config-subject": "S",
            "config-message": "M",
            "config-timeout": "2h",
        },
    )
    assert bad.status_code == 422 and draft_of(name)["steps"][0] == step

    converted = editor.post(
        f"/workflows/{name}/steps/approval/convert", {"revision": editor.revision(name)}
    )
    assert converted.status_code == 200
    step = draft_of(name)["steps"][0]
    assert "kind" not in step and "config" not in step and "boss@example.com" in step["code"]
    assert 'class="code-editor"' in converted.get_data(as_text=True)


# ----------------------------------------------------------------------------- run form


SCHEMA = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "format": "email", "description": "Approver"},
        "count": {"type": "integer", "minimum": 1},
        "ratio": {"type": "number"},
        "urgent": {"type": "boolean"},
        "plan": {"type": "string", "enum": ["free", "pro"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "sizes": {"type": "array", "items": {"type": "integer"}},
        "meta": {"type": "object"},
    },
    "required": ["email", "count", "plan"],
}


def test_the_run_form_validates_per_field_and_starts_a_run(app, define):
    define("form", [("one", code("return ctx.input"))], input_schema=SCHEMA)
    operator = Editor(app, "op@example.com", "operator")
    html = operator.page("/workflows/form/run")
    for label in ("email", "count", "ratio", "urgent", "plan", "tags", "sizes", "meta"):
        assert re.search(
            rf">{label}( <small aria-hidden=\"true\">\(required\)</small>)?</label>", html
        )
    assert html.count("(required)") == 3 and html.count('aria-required="true"') == 3
    assert 'type="checkbox"' in html and "<select" in html and "One per line" in html

    bad = operator.post(
        "/workflows/form/run",
        {
            "f_0": "ann@example.com",
            "f_1": "many",
            "f_2": "1.5",
            "f_4": "",
            "f_6": "1, x",
            "f_7": "{not json",
        },
        htmx=False,
    )
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422
    assert "&#39;many&#39; is not a whole number" in html
    assert "This field is required." in html  # plan
    assert "&#39;x&#39; is not a whole number" in html and "Not valid JSON" in html
    assert db.session.scalar(db.select(db.func.count()).select_from(Run)) == 0

    schema_bad = operator.post(
        "/workflows/form/run", {"f_0": "not-an-email", "f_1": "0", "f_4": "1"}, htmx=False
    )
    html = schema_bad.get_data(as_text=True)
    assert schema_bad.status_code == 422
    assert "is not a &#39;email&#39;" in html and "less than the minimum of 1" in html

    ok = operator.post(
        "/workflows/form/run",
        {
            "f_0": "ann@example.com",
            "f_1": "2",
            "f_2": "0.5",
            "f_3": "y",
            "f_4": "1",
            "f_5": "a\nb",
            "f_6": "1, 2",
            "f_7": '{"k": [1]}',
        },
        htmx=False,
    )
    assert ok.status_code == 302 and ok.headers["Location"].startswith("/runs/")
    run = db.session.scalar(db.select(Run))
    assert run.input == {
        "email": "ann@example.com",
        "count": 2,
        "ratio": 0.5,
        "urgent": True,
        "plan": "pro",
        "tags": ["a", "b"],
        "sizes": [1, 2],
        "meta": {"k": [1]},
    }
    assert run.created_by == "op@example.com"


def test_without_a_schema_the_run_form_takes_json(app, define):
    define("free", [("one", code("return ctx.input"))])
    operator = Editor(app, "op@example.com", "operator")
    bad = operator.post("/workflows/free/run", {"f_input": "[1]"}, htmx=False)
    assert bad.status_code == 422 and "must be a JSON object" in bad.get_data(True)
    ok = operator.post("/workflows/free/run", {"f_input": '{"a": 1}'}, htmx=False)
    assert ok.status_code == 302
    assert db.session.scalar(db.select(Run)).input == {"a": 1}


# ------------------------------------------------------------------------ import/export


def test_import_and_export(app, editor):
    definition = {
        "name": "imported",
        "title": "Imported",
        "steps": [{"name": "one", "code": code("return 1"), "retries": 1}],
    }

    def upload(path: str, data: Any, mode: str = "publish") -> Any:
        body = json.dumps(data).encode() if not isinstance(data, bytes) else data
        return editor.post(
            path,
            {"file": (io.BytesIO(body), "wf.json"), "mode": mode, "note": "from file"},
            htmx=False,
            content_type="multipart/form-data",
        )

    assert upload("/workflows/import", definition).status_code == 302
    workflow = db.session.scalar(db.select(Workflow).filter_by(name="imported"))
    assert workflow.latest_version.label == "v1" and workflow.latest_version.note == "from file"

    exported = editor.client.get("/workflows/imported/export")
    assert exported.status_code == 200 and "attachment" in exported.headers["Content-Disposition"]
    assert exported.json["steps"][0]["retries"] == 1 and exported.json["version"] == "v1"

    changed = dict(definition, steps=[{"name": "two", "code": code("return 2")}])
    assert upload("/workflows/imported/import", changed, mode="draft").status_code == 302
    assert step_names("imported") == ["two"]
    draft = editor.client.get("/workflows/imported/export?source=draft")
    assert draft.json["steps"][0]["name"] == "two" and "schedules" not in draft.json

    invalid = dict(definition, steps=[{"name": "Bad Name", "code": "def run(:"}])
    upload("/workflows/imported/import", invalid)
    page = editor.page("/workflows/imported")
    assert "Not imported" in page and "/steps/0/name" in page and "/steps/0/code" in page
    upload("/workflows/import", b"{nope")
    assert "The file is not JSON" in editor.page("/workflows")


# -------------------------------------------------------------------------- step tests


def work_tests(app: Flask) -> None:
    from rq import Queue

    from console.queueing import get_redis
    from workers.worker import SimpleConsoleWorker

    queue = Queue(app.config["TEST_QUEUE"], connection=get_redis())
    db.session.commit()  # end this session's read snapshot before and after the worker writes
    SimpleConsoleWorker([queue], connection=get_redis()).work(burst=True, logging_level="WARNING")
    db.session.expire_all()
    db.session.commit()


def test_testing_steps_on_the_test_queue(app, editor):
    name = editor.create("Tested")
    editor.add(name)
    editor.add(name, position=1)
    editor.save(
        name,
        "step_1",
        code=code(
            "ctx.logger.info('hello', who=ctx.input['who'])\nprint('printed')\n"
            "return {'greeting': 'hi ' + ctx.input['who']}"
        ),
    )
    started = editor.post(
        f"/workflows/{name}/steps/step_1/test",
        {
            "name": "step_1",
            "retries": 0,
            "retry_delay": 5,
            "timeout": 900,
            "code": draft_of(name)["steps"][0]["code"],
            "sample_input": '{"who": "Ada"}',
        },
    )
    html = started.get_data(as_text=True)
    assert started.status_code == 200 and "queued" in html and 'hx-trigger="every' in html
    test = db.session.scalar(db.select(StepTest))
    assert test.status == "queued"  # the web process did not execute it
    work_tests(app)
    polled = editor.page(f"/workflows/{name}/tests/{test.id}")
    assert "completed" in polled and "hi Ada" in polled and "hx-trigger" not in polled
    assert "info hello" in polled and "print printed" in polled

    # The second step, tested unsaved, sees the first one's last test output; it suspends.
    second = code(
        "links = ctx.flow.suspend(timeout=3600)\nctx.wait('w', 60)\n"
        "ctx.send_email(to='a@example.com', subject='Approve?', text=links.resume_url)\n"
        "return ctx.steps.step_1.output['greeting']"
    )
    editor.post(
        f"/workflows/{name}/steps/step_2/test",
        {
            "name": "step_2",
            "retries": 0,
            "retry_delay": 5,
            "timeout": 900,
            "code": second,
            "sample_input": '{"who": "Ada"}',
        },
    )
    work_tests(app)
    test = db.session.scalars(db.select(StepTest).filter_by(step_name="step_2")).one()
    assert test.status == "completed" and test.output == "hi Ada"
    notes = "\n".join(test.notes)
    assert "ctx.flow.suspend was called" in notes and "links are not created in a test" in notes
    assert "ctx.wait('w', 60) was called" in notes and "emails are not sent" in notes
    assert "step_1" in test.steps

    failing = editor.post(
        f"/workflows/{name}/steps/step_2/test",
        {
            "name": "step_2",
            "retries": 0,
            "retry_delay": 5,
            "timeout": 1,
            "code": code("import time\ntime.sleep(5)"),
            "sample_input": "{}",
        },
    )
    assert failing.status_code == 200
    work_tests(app)
    test = db.session.scalars(
        db.select(StepTest).filter_by(step_name="step_2").order_by(StepTest.created_at.desc())
    ).first()
    assert test.status == "failed" and "StepTimeout" in test.error
    assert "Traceback" in test.error and 'File "<step step_2>"' in test.error

    refused = editor.post(
        f"/workflows/{name}/steps/step_2/test",
        {
            "name": "step_2",
            "retries": 0,
            "retry_delay": 5,
            "timeout": 900,
            "code": "def run(ctx:\n",
            "sample_input": "[1",
        },
    )
    assert "Not tested" in refused.get_data(True) and "Not valid JSON" in refused.get_data(True)
    assert db.session.scalar(db.select(db.func.count()).select_from(StepTest)) == 3


def test_a_test_no_worker_picks_up_stops_polling(app, editor):
    from datetime import timedelta

    from console.timeutil import utcnow

    name = editor.create("Lost")
    workflow = db.session.scalar(db.select(Workflow).filter_by(name=name))
    test = StepTest(
        workflow_id=workflow.id,
        step_name="one",
        step={"name": "one", "code": code(), "timeout": 5},
        created_at=utcnow() - timedelta(minutes=10),
    )
    db.session.add(test)
    db.session.commit()
    html = editor.page(f"/workflows/{name}/tests/{test.id}")
    assert "No result" in html and "hx-trigger" not in html


def test_workers_listen_on_the_run_queue_then_the_test_queue(app):
    from console.queueing import get_redis
    from workers.worker import default_queues

    assert [q.name for q in default_queues(get_redis())] == ["runs", "tests"]


# ------------------------------------------------------------------------------- roles


def editor_rules(app: Flask) -> list[Any]:
    return [r for r in app.url_map.iter_rules() if r.endpoint.startswith("editor.")]


def concrete(rule: Any) -> str:
    values = {"name": "wf", "step": "one", "label": "v1", "test_id": "x" * 26}
    return rule.build(values, append_unknown=False)[1]


def test_a_viewer_gets_403_on_every_editing_route_and_anonymous_goes_to_login(app, define):
    define("wf", [("one", code("return 1"))])
    viewer = Editor(app, "viewer@example.com", "viewer")
    g.pop("csrf_token", None)
    anonymous = app.test_client()
    anonymous_token = csrf_token(anonymous.get("/login").get_data(as_text=True))
    checked = 0
    for rule in editor_rules(app):
        view = app.view_functions[rule.endpoint]
        path = concrete(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            sent = anonymous.open(path, method=method, data={"csrf_token": anonymous_token})
            assert sent.status_code == 302 and "/login" in sent.headers["Location"], path
            if view.required_role != "viewer":
                answer = viewer.client.open(path, method=method, data={"csrf_token": viewer.token})
                assert answer.status_code == 403, (method, path, answer.status_code)
                checked += 1
    assert checked >= 15
    # What viewers may do: read the workflow page (without editing controls) and versions.
    page = viewer.page("/workflows/wf")
    assert "Save step" not in page and "Add a step" not in page and "/hooks/" not in page
    assert "def run(ctx)" in page
    assert "v1" in viewer.page("/workflows/wf/versions")


def test_a_schema_added_diffs_as_added_lines_only(app):
    from console.drafts import diff_definitions

    schema = {"type": "object", "properties": {"email": {"type": "string"}}}
    change = diff_definitions({"steps": []}, {"steps": [], "input_schema": schema}).fields[0]
    lines = change.unified.splitlines()
    assert lines[:2] == ["--- /dev/null", "+++ Input schema (after)"]
    assert all(line.startswith("+") for line in lines[3:]) and "+{" in lines


def test_old_step_tests_are_pruned_but_the_last_completed_one_stays(app, define):
    from console import steptests

    workflow = define("pruned", [("a", code("return ctx.input['n']")), ("b", code())])
    definition = db.session.get(Workflow, workflow.id).versions[-1].definition
    first = steptests.start_step_test(workflow, definition, "a", {"n": 0}, None)
    steptests.finish_step_test(first.id, "completed", output=0, claimed=False)
    for n in range(1, 15):  # fourteen failed tests after the one that completed
        test = steptests.start_step_test(workflow, definition, "a", {"n": n}, None)
        steptests.finish_step_test(test.id, "failed", error="boom", claimed=False)
    steptests.start_step_test(workflow, definition, "b", {}, None)  # another step: untouched

    db.session.expire_all()
    kept = db.session.scalars(
        db.select(StepTest.input).where(StepTest.step_name == "a").order_by(StepTest.id)
    ).all()
    assert kept == [{"n": 0}] + [{"n": n} for n in range(15 - steptests.KEEP_TESTS, 15)]
    assert steptests.last_outputs(workflow.id, ["a"]) == {"a": 0}


def test_the_step_edits_are_domain_functions(app):
    """``console.drafts`` edits a draft's steps for the views: each saves the whole draft on
    the revision given, and a stale revision or a changed set of steps is refused."""
    workflow = drafts.create_workflow("Edits", None, "ed@example.com")
    revision = workflow.draft_revision
    for position, name in enumerate(("a", "b", "c")):
        drafts.add_step(workflow, step(name), position, base_revision=revision, user="ed")
        revision += 1
    assert step_names("edits") == ["a", "b", "c"]
    drafts.move_step(workflow, "c", "up", base_revision=revision, user="ed")
    assert step_names("edits") == ["a", "c", "b"]
    drafts.move_step(workflow, "a", "up", base_revision=revision + 1, user="ed")  # stays
    assert workflow.draft_revision == revision + 1
    with pytest.raises(drafts.StaleDraft):
        drafts.delete_step(workflow, "b", base_revision=revision, user="ed")
    drafts.delete_step(workflow, "b", base_revision=revision + 1, user="ed")
    assert step_names("edits") == ["a", "c"]
    with pytest.raises(Conflict, match="The steps changed"):
        drafts.order_steps(workflow, ["c", "b"], base_revision=revision + 2, user="ed")
    drafts.order_steps(workflow, ["c", "a"], base_revision=revision + 2, user="ed")
    assert step_names("edits") == ["c", "a"]
    with pytest.raises(NotFound):
        drafts.convert_step(workflow, "zz", base_revision=revision + 3, user="ed")


def test_an_input_field_the_schema_lacks_is_a_warning_at_the_setting(app, editor):
    from console.definitions import save_workflow

    schema = {"type": "object", "properties": {"email": {"type": "string"}}}
    url = "https://example.com/users/{{ input.user_id }}"
    http = {"name": "fetch", "kind": "http", "config": {"url": url}}
    save_workflow({"name": "lookup", "input_schema": schema, "steps": [http]}, publish=False)
    html = editor.page("/workflows/lookup")
    warning = re.search(r'<p class="field-warning" role="note">([^<]*)</p>', html)
    assert warning and "the input schema has no field &#39;user_id&#39;" in warning[1]
    assert "(its fields: email)" in warning[1]
    assert "field-error" not in html  # a warning: the step is saved and can be published
    assert draft_of("lookup")["steps"][0]["config"]["url"] == url
    http["config"]["url"] = "https://example.com/users/{{ input.email }}"
    save_workflow({"name": "lookup", "input_schema": schema, "steps": [http]}, publish=False)
    assert "field-warning" not in editor.page("/workflows/lookup")
