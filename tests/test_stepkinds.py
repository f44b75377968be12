"""Built-in step kinds (``console.stepkinds``): their checks, their generated code, and that code
in real runs: worked by the real RQ worker code in this process, against real HTTP servers (a
small one started here, and the console's own demo job service served on a real port), with
the approval and callback links acted on through the real ``/flow/...`` routes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

import console
from console import stepkinds
from console.definitions import check_step_code, normalise
from console.editor import kind_forms
from console.errors import ValidationFailed
from console.extensions import db
from console.models import OutboxMessage, Run
from tests.support import details_by_path

# ------------------------------------------------------------------------------ helpers


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with the server's next scripted answer and records the request."""

    def _handle(self) -> None:
        server: Any = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        server.requests.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        status, answer, *more = server.answers.pop(0) if server.answers else (200, {"ok": True})
        raw = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        self.send_response(status)
        kind = "text/plain" if isinstance(answer, str) else "application/json"
        self.send_header("Content-Type", kind)
        for name, value in (more[0] if more else {}).items():  # e.g. a redirect's Location
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.requests = []
    server.answers = []
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def served_console(app: Flask) -> Iterator[str]:
    """The console itself on a real port (for its /demo/jobs service); links point at it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.config["BASE_URL"] = base
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()


def kind_step(name: str, kind: str, **config: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "config": config}


def start(api: Any, workflow: str, **input: Any) -> str:
    response = api.post(f"/api/workflows/{workflow}/runs", json={"input": input})
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def show(api: Any, run_id: str) -> dict[str, Any]:
    db.session.commit()
    response = api.get(f"/api/runs/{run_id}")
    assert response.status_code == 200
    return dict(response.json)


def status_of(run_id: str) -> str:
    db.session.expire_all()
    status = db.session.scalar(select(Run.status).where(Run.id == run_id))
    db.session.commit()
    return str(status)


def outbox(run_id: str) -> list[OutboxMessage]:
    db.session.expire_all()
    rows = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.run_id == run_id).order_by(OutboxMessage.id)
    ).all()
    return list(rows)


def link_path(text: str, label: str) -> str:
    line = next(line for line in text.splitlines() if line.startswith(label))
    return urlsplit(line.split()[-1]).path


SHOW_RESUME = (
    "def run(ctx):\n"
    "    earlier = ctx.steps[{name!r}]\n"
    "    return {{'data': earlier.resume_data, 'timed_out': earlier.timed_out,\n"
    "            'output': earlier.output}}\n"
)

CONSOLE = Path(console.__file__).parent

# ------------------------------------------------------------------------- the contract


def test_every_kind_has_a_valid_starting_config_that_compiles_to_run_ctx(app) -> None:
    assert list(stepkinds.KINDS) == ["approval", "email", "http", "delay", "poll", "callback"]
    assert stepkinds.CODE_LABEL == "Python code"
    for name, kind in stepkinds.KINDS.items():
        assert kind.name == name and kind.label and kind.summary
        config = kind.defaults()
        assert stepkinds.config_problems(name, config) == [], name
        code = stepkinds.generate_code(name, config)
        assert check_step_code(code) is None, (name, code)
        assert code.count("def run(ctx):") == 1
        json.dumps(config)  # JSON-able
        # The form's fields are the config keys, and a form filled from the config gives it
        # back unchanged.
        with app.test_request_context():
            form = kind_forms.form_for(name, data=config, prefix="config-")
            assert set(config) <= {f.name.removeprefix("config-") for f in form}
            assert kind_forms.config_from_form(name, form) == config


def test_importing_the_step_kinds_imports_no_form_library() -> None:
    # The API and the CLI judge configs with console.stepkinds; only the editor builds forms
    # (console/editor/kind_forms.py). console/__init__ itself imports flask_wtf (CSRF, in
    # create_app's extensions), so the package is loaded here under a bare ``console``
    # package: what is measured is what console.stepkinds itself pulls in.
    code = (
        "import sys, types\n"
        f"package = types.ModuleType('console'); package.__path__ = [{str(CONSOLE)!r}]\n"
        "sys.modules['console'] = package\n"
        "import console.stepkinds\n"
        "assert console.stepkinds.KINDS\n"
        "assert 'flask_wtf' not in sys.modules, 'flask_wtf'\n"
        "assert 'wtforms' not in sys.modules, 'wtforms'\n"
        "assert 'flask' not in sys.modules, 'flask'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_snippets_are_importable_modules_whose_code_the_steps_carry() -> None:
    from console.stepkinds import codegen
    from console.stepkinds.snippets import http_only

    assert callable(http_only.open_url)
    assert codegen.HTTP_ONLY.lstrip("\n").startswith("def only_http(request):")
    assert "import" not in codegen.RESOLVER  # the imports above the marker stay behind


def test_problems_are_given_per_key(app) -> None:
    problems = dict(
        stepkinds.config_problems(
            "http",
            {
                "url": "ftp://example.com",
                "method": "FETCH",
                "headers": '{"X-A": ',
                "body": '{"id": {{ input.id }}}',
                "expected_status": "2xy",
                "timeout": 0,
            },
        )
    )
    assert set(problems) == {"url", "method", "headers", "body", "expected_status", "timeout"}
    assert "http://" in problems["url"]
    assert "JSON" in problems["headers"] and "JSON" in problems["body"]
    assert "between 1 and 300" in problems["timeout"]

    approval = dict(
        stepkinds.config_problems(
            "approval",
            {"recipients": "boss@example.com, not-an-email", "subject": " ", "message": "{{ x }}"},
        )
    )
    assert "'not-an-email' is not an email address" in approval["recipients"]
    assert approval["subject"] == "is required"
    assert "is not a reference" in approval["message"]

    poll = dict(
        stepkinds.config_problems(
            "poll",
            {"url": "{{ input.url }}", "condition": 'response["state" ==', "max_retries": -1},
        )
    )
    assert set(poll) == {"condition", "max_retries"}
    assert "not a Python expression" in poll["condition"]

    assert dict(stepkinds.config_problems("delay", {"duration": "3 fortnights"})) == {
        "duration": "must be a duration such as 30s, 10m, 2h or 7d"
    }
    assert dict(stepkinds.config_problems("delay", {})) == {"duration": "is required"}
    assert dict(stepkinds.config_problems("email", {**_email(), "cc": "x"})) == {
        "cc": "unknown setting"
    }
    assert stepkinds.config_problems("teleport", {}) == [
        ("", "unknown step kind 'teleport' (known: approval, email, http, delay, poll, callback)")
    ]
    with pytest.raises(ValueError, match="duration"):
        stepkinds.generate_code("delay", {"duration": "soon"})


def test_headers_as_lines_or_json_and_durations_in_units() -> None:
    assert stepkinds.parse_headers("Accept: application/json\nX-Id: {{ input.id }}\n") == {
        "Accept": "application/json",
        "X-Id": "{{ input.id }}",
    }
    assert stepkinds.parse_headers('{"Accept": "text/plain"}') == {"Accept": "text/plain"}
    with pytest.raises(ValueError, match="line 1"):
        stepkinds.parse_headers("no colon here")
    check = stepkinds.check_duration(1, 365 * 86400)
    assert [check(v) for v in (90, "90", "30s", "10 minutes", "2h", "7d", "1 week")] == [
        90,
        90,
        30,
        600,
        7200,
        604800,
        604800,
    ]
    with pytest.raises(ValueError, match="between"):
        check("0s")


def test_the_form_validates_posted_values_per_field(app) -> None:
    from flask_wtf.csrf import generate_csrf
    from werkzeug.datastructures import MultiDict

    posted = MultiDict(
        {
            "config-url": "not a url",
            "config-method": "POST",
            "config-headers": "Accept application/json",
            "config-body": "",
            "config-expected_status": "2xx",
            "config-timeout": "30",
        }
    )
    with app.test_request_context(method="POST"):
        form = kind_forms.form_for("http", formdata=posted, prefix="config-")
        assert not form.validate()
        assert set(form.errors) == {"url", "headers", "csrf_token"}  # CSRF is on
        posted["config-csrf_token"] = generate_csrf()
        form = kind_forms.form_for("http", formdata=posted, prefix="config-")
        assert not form.validate()
        assert set(form.errors) == {"url", "headers"}
        config = kind_forms.config_from_form("http", form)
    assert config["method"] == "POST" and config["timeout"] == 30
    assert {k for k, _ in stepkinds.config_problems("http", config)} == {"url", "headers"}


def _email(**config: Any) -> dict[str, Any]:
    return {"to": "someone@example.com", "subject": "Hi", "text": "Hello", **config}


# ------------------------------------------------------------------------ definitions


def test_definitions_validate_config_and_generate_code(app) -> None:
    definition = normalise(
        {
            "name": "kinds",
            "steps": [
                kind_step("wait", "delay", duration="2h"),
                kind_step("mail", "email", **_email()),
            ],
        }
    )
    wait, mail = definition["steps"]
    assert wait["kind"] == "delay" and wait["config"] == {"duration": "2h"}
    assert 'ctx.wait("delay", 7200)  # 2 hours' in wait["code"]
    assert wait["retries"] == 0 and wait["timeout"] == 900  # the usual step settings
    assert mail["config"]["html"] == ""  # defaults filled in

    with pytest.raises(ValidationFailed) as failed:
        normalise(
            {
                "name": "kinds",
                "steps": [
                    kind_step("one", "email", to="nobody", subject="x", text="y"),
                    kind_step("two", "teleport"),
                    {"name": "three", "kind": "delay", "config": "1h"},
                    kind_step("four", "poll", url="https://x.example", condition="1 +"),
                ],
            }
        )
    problems = {d["path"]: d["message"] for d in failed.value.details}
    assert set(problems) == {
        "/steps/0/config/to",
        "/steps/1/kind",
        "/steps/2/config",
        "/steps/3/config/condition",
    }
    assert "unknown step kind 'teleport'" in problems["/steps/1/kind"]


def test_a_definition_with_kind_steps_round_trips_through_the_api(app, api) -> None:
    body = {
        "title": "Onboard customer",
        "input_schema": {"type": "object", "properties": {"email": {"type": "string"}}},
        "steps": [
            kind_step("welcome", "email", to="{{ input.email }}", subject="Hi", text="Welcome"),
            kind_step("pause", "delay", duration="10m"),
            {"name": "done", "code": "def run(ctx):\n    return 1\n", "retries": 2},
        ],
    }
    put = api.put("/api/workflows/onboard", json=body)
    assert put.status_code == 201, put.json
    assert put.json["published"] is True
    got = api.get("/api/workflows/onboard").json
    welcome, pause, done = got["steps"]
    assert welcome["kind"] == "email" and welcome["config"]["to"] == "{{ input.email }}"
    assert "ctx.send_email(" in welcome["code"] and "def run(ctx):" in welcome["code"]
    assert pause["config"] == {"duration": "10m"} and "kind" not in done

    # What GET answers can be PUT back as it is: nothing changed, nothing published.
    again = {k: got[k] for k in ("title", "input_schema", "steps")}
    assert api.put("/api/workflows/onboard", json=again).json["published"] is False

    # "Convert to code": the generated code as an ordinary step publishes the same behaviour.
    ejected = dict(again, steps=[{"name": "welcome", "code": welcome["code"]}, *again["steps"][1:]])
    put = api.put("/api/workflows/onboard", json=ejected)
    assert put.json["published"] is True
    assert "kind" not in api.get("/api/workflows/onboard").json["steps"][0]

    bad = api.put(
        "/api/workflows/onboard",
        json=dict(again, steps=[kind_step("hook", "http", url="example.com", method="GET")]),
    )
    assert bad.status_code == 422
    assert set(details_by_path(bad)) == {"/steps/0/config/url"}


# ------------------------------------------------------------------------- real runs


def test_approval_by_email_then_the_next_step_reads_resume_data(
    app, define, api, work, client
) -> None:
    define(
        "approve",
        [
            kind_step(
                "ask",
                "approval",
                recipients="{{ input.approver }}, audit@example.com",
                subject="Approve {{ input.what }}?",
                message="{{ input.what }} for {{ input.amount }} EUR needs your approval.",
                timeout="2d",
            ),
            {"name": "decide", "code": SHOW_RESUME.format(name="ask")},
        ],
    )
    run_id = start(api, "approve", approver="boss@example.com", what="Laptop", amount=1200)
    work(until=lambda: status_of(run_id) == "suspended")
    (email,) = outbox(run_id)
    assert email.recipients == ["boss@example.com", "audit@example.com"]
    assert email.subject == "Approve Laptop?"
    assert email.text.startswith("Laptop for 1200 EUR needs your approval.\n")
    approve = link_path(email.text, "Approve:")
    assert approve.startswith("/flow/resume/") and link_path(email.text, "Reject:").startswith(
        "/flow/cancel/"
    )

    answer = client.post(approve, json={"comment": "fine"})
    assert answer.status_code == 200 and answer.json["action"] == "resumed"
    work()
    run = show(api, run_id)
    assert run["status"] == "completed", run
    assert run["output"] == {
        "data": {"comment": "fine"},
        "timed_out": False,
        "output": {"asked": "boss@example.com, audit@example.com"},
    }
    assert len(outbox(run_id)) == 1  # replays sent nothing again

    # Reject: the cancel link cancels the run.
    second = start(api, "approve", approver="boss@example.com", what="Car", amount=9)
    work(until=lambda: status_of(second) == "suspended")
    reject = link_path(outbox(second)[0].text, "Reject:")
    assert client.post(reject).json["action"] == "canceled"
    assert status_of(second) == "canceled"


def test_send_email_with_references_to_input_and_earlier_outputs(app, define, api, work) -> None:
    define(
        "mail",
        [
            ("fetch", "def run(ctx):\n    return {'order': {'id': 42, 'items': ['tea', 'cup']}}"),
            kind_step(
                "notify",
                "email",
                to="{{ input.email }}",
                subject="Order {{ steps.fetch.output.order.id }}",
                text="Hello {{ input.name }}, you ordered {{ steps.fetch.output.order.items }}.",
                html="<p>First: {{ steps.fetch.output.order.items.0 }}</p>",
            ),
        ],
    )
    run_id = start(api, "mail", email="ann@example.com", name="Ann")
    work()
    run = show(api, run_id)
    assert run["status"] == "completed", run
    assert run["output"] == {"sent_to": "ann@example.com", "subject": "Order 42"}
    (email,) = outbox(run_id)
    assert email.recipients == ["ann@example.com"]
    assert email.subject == "Order 42"
    assert email.text == 'Hello Ann, you ordered ["tea", "cup"].'
    assert email.html == "<p>First: tea</p>"
    assert email.status == "kept"  # no MAIL_SERVER: kept in the Outbox

    # A reference to something the run does not have fails the step with a clear message.
    missing = start(api, "mail", email="bob@example.com")
    work()
    failed = show(api, missing)
    assert failed["status"] == "failed"
    assert "{{ input.name }}: there is no 'name' in this run" in failed["error"]


def test_an_email_refused_for_header_injection_is_recorded_as_failed(
    app, define, api, work
) -> None:
    """A line break in a header (here a subject taken from the input) is refused by the email
    library: the Outbox says failed and why, and the step fails saying so (the row used to stay
    "sending" forever)."""
    define(
        "mail",
        [
            {
                **kind_step(
                    "notify",
                    "email",
                    to="ann@example.com",
                    subject="{{ input.subject }}",
                    text="Hello",
                ),
                "retries": 1,
                "retry_delay": 0,
            }
        ],
    )
    run_id = start(api, "mail", subject="Hello\nBcc: everyone@example.com")
    work()
    run = show(api, run_id)
    assert run["status"] == "failed", run
    assert "sending the email failed: the message was refused" in run["error"]
    assert "linefeed" in run["error"]
    (email,) = outbox(run_id)  # the retry took the same message up again, and refused it
    assert email.status == "failed" and email.sent_at is None
    assert email.error.startswith("the message was refused: ") and "linefeed" in email.error
    assert run["steps"][0]["attempts"] == 2


def test_http_request_sends_method_headers_and_json_body_once(
    app, define, api, work, http_server
) -> None:
    http_server.answers = [(201, {"id": "u-7"})]
    define(
        "call",
        [
            ("prepare", "def run(ctx):\n    return {'plan': 'pro'}"),
            kind_step(
                "create",
                "http",
                url=http_server.base + "/users?team={{ input.team }}",
                method="POST",
                headers="Authorization: Bearer {{ input.key }}\nX-Static: yes",
                body='{"email": "{{ input.email }}", "plan": "{{ steps.prepare.output.plan }}", '
                '"seats": "{{ input.seats }}"}',
                expected_status="201",
                timeout=5,
            ),
        ],
    )
    run_id = start(api, "call", team="blue", key="k1", email="a@example.com", seats=3)
    work()
    run = show(api, run_id)
    assert run["status"] == "completed", run
    output = run["output"]
    assert output["status"] == 201 and output["json"] == {"id": "u-7"}
    assert output["headers"]["Content-Type"] == "application/json"
    (request,) = http_server.requests
    assert request["method"] == "POST" and request["path"] == "/users?team=blue"
    assert request["headers"]["Authorization"] == "Bearer k1"
    assert request["headers"]["X-Static"] == "yes"
    assert request["headers"]["Content-Type"] == "application/json"
    # A lone reference keeps its JSON type (seats is the number 3, not "3").
    assert json.loads(request["body"]) == {"email": "a@example.com", "plan": "pro", "seats": 3}


def test_http_request_fails_on_an_unexpected_status_and_retries_send_again(
    app, define, api, work, http_server
) -> None:
    http_server.answers = [(503, "busy"), (200, "fine now")]
    define(
        "flaky",
        [
            {
                **kind_step("get", "http", url=http_server.base + "/status", method="GET"),
                "retries": 1,
                "retry_delay": 0,
            }
        ],
    )
    run_id = start(api, "flaky")
    work()
    run = show(api, run_id)
    assert run["status"] == "completed", run
    assert run["output"]["text"] == "fine now" and run["output"]["status"] == 200
    assert [r["method"] for r in http_server.requests] == ["GET", "GET"]

    http_server.answers = [(404, {"error": "no such thing"})]
    define("strict", [kind_step("get", "http", url=http_server.base + "/x", method="GET")])
    failed = start(api, "strict")
    work()
    run = show(api, failed)
    assert run["status"] == "failed"
    assert "answered HTTP 404" in run["error"] and "no such thing" in run["error"]


def test_only_http_and_https_urls_are_saved(app, api) -> None:
    """A literal URL of another scheme is refused when the workflow is saved, at its field."""
    steps = [
        kind_step("get", "http", url="file:///proc/self/environ"),
        kind_step("check", "poll", url="ftp://files.example/job", condition="True"),
        kind_step("hook", "callback", notify_url="FILE:///etc/passwd"),
        kind_step("data", "http", url="data:text/plain,hello"),
    ]
    answer = api.put("/api/workflows/schemes", json={"steps": steps})
    assert answer.status_code == 422, answer.json
    problems = details_by_path(answer)
    assert set(problems) == {
        "/steps/0/config/url",
        "/steps/1/config/url",
        "/steps/2/config/notify_url",
        "/steps/3/config/url",
    }
    assert all("http:// or https://" in message for message in problems.values())
    with pytest.raises(ValidationFailed):
        normalise({"name": "schemes", "steps": steps[:1]})


def test_a_url_from_the_input_must_be_http_or_https(app, define, api, work, http_server) -> None:
    """A URL that comes from the run (here its input) is checked when the step fetches it:
    file: would hand the worker's environment (its secret key) to whoever starts the run."""
    define("fetch", [kind_step("get", "http", url="{{ input.url }}", expected_status="any")])
    define("check", [kind_step("wait_done", "poll", url="{{ input.url }}", condition="True")])
    define("hook", [kind_step("wait", "callback", notify_url="{{ input.url }}")])
    environ = "file:///proc/self/environ"
    for workflow, url in (
        ("fetch", environ),
        ("fetch", " FILE:///proc/self/environ"),
        ("check", environ),
        ("hook", environ),
        ("fetch", "ftp://127.0.0.1/secret_key"),
    ):
        run_id = start(api, workflow, url=url)
        work()
        run = show(api, run_id)
        assert run["status"] == "failed", (workflow, url, run)
        assert f"only http and https URLs are allowed: {url.strip()}" in run["error"]
        shown = json.dumps([run, api.get(f"/api/runs/{run_id}/logs").json])
        assert "PATH=" not in shown and app.config["SECRET_KEY"] not in shown
        assert run["steps"][0]["output"] is None

    # A redirect is followed only to http or https: urllib itself refuses one to file: (the
    # answer is the redirect itself) but follows one to ftp:.
    http_server.answers = [(302, "moved", {"Location": environ})]
    run_id = start(api, "fetch", url=http_server.base + "/moved")
    work()
    run = show(api, run_id)
    assert run["output"]["status"] == 302 and run["output"]["text"] == "moved"
    http_server.answers = [(302, "moved", {"Location": "ftp://127.0.0.1/secret_key"})]
    run_id = start(api, "fetch", url=http_server.base + "/moved")
    work()
    run = show(api, run_id)
    assert run["status"] == "failed", run
    assert "only http and https URLs are allowed: ftp://127.0.0.1/secret_key" in run["error"]
    http_server.answers = [(302, "moved", {"Location": "/here"}), (200, {"here": True})]
    run_id = start(api, "fetch", url=http_server.base + "/moved")
    work()
    assert show(api, run_id)["output"]["json"] == {"here": True}  # http redirects still work


def test_versions_published_before_a_kind_fix_run_the_fixed_code(app, define, api, work) -> None:
    """A built-in step executes the code this console generates from its config, not the
    copy stored when the version was published: a version whose stored code predates the
    http-only check (simulated by putting urlopen back into it) is protected too."""
    from sqlalchemy import select, update

    from console.extensions import db
    from console.models import WorkflowVersion

    workflow = define(
        "old", [kind_step("get", "http", url="{{ input.url }}", expected_status="any")]
    )
    version = db.session.scalar(
        select(WorkflowVersion).where(WorkflowVersion.workflow_id == workflow.id)
    )
    definition = json.loads(json.dumps(version.definition))
    old_code = definition["steps"][0]["code"].replace(
        "with open_url(request, timeout) as response:",
        "with urllib.request.urlopen(request, timeout=timeout) as response:",
    )
    assert old_code != definition["steps"][0]["code"]
    definition["steps"][0]["code"] = old_code
    db.session.execute(
        update(WorkflowVersion)
        .where(WorkflowVersion.id == version.id)
        .values(definition=definition)
    )
    db.session.commit()
    run_id = start(api, "old", url="file:///proc/self/environ")
    work()
    run = show(api, run_id)
    assert run["status"] == "failed", run
    assert "only http and https URLs are allowed: file:///proc/self/environ" in run["error"]


def test_delay_sleeps_durably_then_continues(app, define, api, work) -> None:
    define(
        "later",
        [kind_step("pause", "delay", duration="1s"), ("after", "def run(ctx):\n    return 'on'")],
    )
    run_id = start(api, "later")
    began = time.monotonic()
    work(until=lambda: status_of(run_id) == "sleeping")
    work()
    assert time.monotonic() - began >= 1.0
    run = show(api, run_id)
    assert run["status"] == "completed" and run["output"] == "on"
    assert run["steps"][0]["output"] == {"waited_seconds": 1}


def test_poll_until_the_demo_job_is_done(app, define, api, work, served_console) -> None:
    """An HTTP step starts a job on the console's demo service; a poll step re-checks it."""
    define(
        "job",
        [
            kind_step(
                "start",
                "http",
                url=served_console + "/demo/jobs",
                method="POST",
                body='{"seconds": 0.6, "result": {"rows": 42}}',
            ),
            kind_step(
                "wait_done",
                "poll",
                url="{{ steps.start.output.json.status_url }}",
                condition='response["status"] == "done"',
                interval="0.3s",
                max_retries=20,
            ),
        ],
    )
    run_id = start(api, "job")
    work()
    run = show(api, run_id)
    assert run["status"] == "completed", run
    output = run["output"]
    assert output["done"] is True and output["response"]["result"] == {"rows": 42}
    assert output["checks"] >= 2 and run["steps"][1]["runs"] == output["checks"]


def test_poll_fails_clearly_when_retries_run_out(app, define, api, work, http_server) -> None:
    http_server.answers = [(200, {"state": "running"})] * 3
    define(
        "never",
        [
            kind_step(
                "wait_done",
                "poll",
                url=http_server.base + "/job",
                condition='response["state"] == "done"',
                interval=0,
                max_retries=2,
            )
        ],
    )
    run_id = start(api, "never")
    work()
    run = show(api, run_id)
    assert run["status"] == "failed"
    assert "is still not done after 3 checks" in run["error"]
    assert len(http_server.requests) == 3


def test_wait_for_callback_notifies_and_the_next_step_reads_the_callback(
    app, define, api, work, client, http_server
) -> None:
    define(
        "hook",
        [
            kind_step("wait", "callback", timeout="1h", notify_url=http_server.base + "/notify"),
            {"name": "use", "code": SHOW_RESUME.format(name="wait")},
        ],
    )
    run_id = start(api, "hook")
    work(until=lambda: status_of(run_id) == "suspended")
    (notified,) = http_server.requests
    sent = json.loads(notified["body"])
    assert sent["run"] == run_id
    assert sent["resume_url"].startswith("http://console.test/flow/resume/")
    logs = api.get(f"/api/runs/{run_id}/logs").json
    assert sent["resume_url"] in json.dumps(logs)  # announced in the run's log too

    answer = client.post(urlsplit(sent["resume_url"]).path, json={"invoice": "INV-9"})
    assert answer.status_code == 200 and answer.json["action"] == "resumed"
    work()
    run = show(api, run_id)
    assert run["status"] == "completed", run
    assert run["output"]["data"] == {"invoice": "INV-9"}
    assert run["output"]["timed_out"] is False
    assert len(http_server.requests) == 1  # replays do not notify again


def test_without_an_answer_the_next_step_sees_timed_out(app, define, api, work) -> None:
    define(
        "quiet",
        [
            kind_step(
                "ask",
                "approval",
                recipients="a@example.com",
                subject="?",
                message="?",
                timeout="1s",
            ),
            kind_step("hook", "callback", timeout=1),
            {
                "name": "after",
                "code": "def run(ctx):\n"
                "    return [ctx.steps.ask.timed_out, ctx.steps.hook.timed_out,\n"
                "            ctx.steps.ask.resume_data]\n",
            },
        ],
    )
    run_id = start(api, "quiet")
    work(timeout=20)
    run = show(api, run_id)
    assert run["status"] == "completed", run
    assert run["output"] == [True, True, None]


def test_a_reference_to_a_later_or_unknown_step_is_refused_at_its_field(app) -> None:
    def definition(*steps: dict[str, Any]) -> dict[str, Any]:
        return {"name": "refs", "steps": list(steps)}

    code = {"name": "fetch", "code": "def run(ctx):\n    return {'id': 1}"}
    later = kind_step("mail", "email", **_email(subject="{{ steps.fetch.output.title }}"))
    normalise(definition(code, later))  # fetch runs first: fine

    with pytest.raises(ValidationFailed) as failed:
        normalise(definition(later, code))  # fetch has not run yet when mail runs
    assert {d["path"]: d["message"] for d in failed.value.details} == {
        "/steps/0/config/subject": "{{ steps.fetch.output.title }} names no earlier step "
        "(steps before this one: none, this is the first step)"
    }
    typo = kind_step("mail", "email", **_email(subject="{{ steps.fecth.output.title }}"))
    with pytest.raises(ValidationFailed) as failed:
        normalise(definition(code, typo))
    assert {d["path"]: d["message"] for d in failed.value.details} == {
        "/steps/1/config/subject": "{{ steps.fecth.output.title }} names no earlier step "
        "(steps before this one: fetch)"
    }
