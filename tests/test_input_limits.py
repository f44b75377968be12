"""Bad request bodies and oversized fields are refused with a clear 4xx, never a 500: deep
JSON, NaN and Infinity, chunked bodies over the size limit, and text that PostgreSQL cannot
store (too long for its column, or holding NUL)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from console.auth import create_user
from console.extensions import db
from console.jsonbody import MAX_DEPTH, nesting_depth, parse_json
from console.models import Run
from tests.support import log_in
from tests.test_editor import Editor
from tests.test_links import links_of, start, status_of
from tests.test_tasks import act

DEEP = "[" * 100_000 + "]" * 100_000
WAIT = """\
def run(ctx):
    ctx.flow.suspend(timeout=600)
    return {"asked": True}
"""
THEN = """\
def run(ctx):
    return ctx.steps["ask"].resume_data
"""
ECHO = "def run(ctx):\n    return ctx.input\n"


def run_count() -> int:
    db.session.commit()
    return int(db.session.scalar(db.select(db.func.count()).select_from(Run)) or 0)


def hook_path(api: Any, name: str) -> str:
    return urlsplit(api.get(f"/api/workflows/{name}").json["webhook_url"]).path


@pytest.fixture
def approval(define: Any) -> Any:
    return define("approval", [("ask", WAIT), ("then", THEN)])


@pytest.fixture
def suspended(approval: Any, api: Any, work: Any) -> tuple[str, dict[str, str]]:
    run_id = start(api, "approval")
    work(until=lambda: status_of(run_id) == "suspended")
    return run_id, links_of(api, run_id)


# ------------------------------------------------------------------------------ the parser


def test_the_parser_counts_depth_without_recursion_and_ignores_brackets_in_strings():
    assert nesting_depth(DEEP) == 100_000
    assert nesting_depth('{"a": "[[[[", "b": [{"c": "\\"]]]"}]}') == 3
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValueError, match="not allowed in JSON"):
            parse_json(f'{{"x": {constant}}}')
    assert parse_json(b'\xef\xbb\xbf{"x": "\xc3\xa9"}') == {"x": "é"}  # BOM, UTF-8


# ------------------------------------------------------------------------- deep JSON: 400


def test_deep_json_answers_400_on_the_api(app, api, define):
    define("echo", [("echo", ECHO)])
    headers = {"Content-Type": "application/json"}
    for method, path in (("PUT", "/api/workflows/echo"), ("POST", "/api/workflows/echo/runs")):
        response = api.request(method, path, data=DEEP, headers=headers)
        assert response.status_code == 400, (path, response.status_code)
        assert response.json["error"] == (
            f"The request body must be JSON: nested deeper than {MAX_DEPTH} levels"
        )
    deep_input = json.dumps({"input": {"x": 1}})[:-1] + ', "y": ' + DEEP + "}"
    response = api.post("/api/workflows/echo/runs", data=deep_input, headers=headers)
    assert response.status_code == 400
    assert run_count() == 0


def test_deep_json_answers_400_on_a_webhook(app, api, define, client):
    define("echo", [("echo", ECHO)])
    response = client.post(hook_path(api, "echo"), data=DEEP, content_type="application/json")
    assert response.status_code == 400
    assert "nested deeper than" in response.json["error"]
    assert run_count() == 0


def test_deep_json_and_nan_answer_400_on_a_resume_link(app, api, client, suspended, work):
    run_id, links = suspended
    for body in (DEEP, '{"x": NaN}', '{"x": -Infinity}'):
        response = client.post(links["resume"], data=body, content_type="application/json")
        assert response.status_code == 400, body[:20]
        assert response.json["error"].startswith("The request body must be JSON: ")
    assert status_of(run_id) == "suspended"  # the link still works
    ok = client.post(links["resume"], json={"x": 1.5})
    assert ok.status_code == 200 and ok.json["action"] == "resumed"
    work()
    assert api.get(f"/api/runs/{run_id}").json["output"] == {"x": 1.5}


POLL = """\
def run(ctx):
    if ctx.run.runs == 1:
        links = ctx.flow.rerun(600)
        with open(ctx.input["url_file"], "w") as f:
            f.write(links.resume_url)
        return None
    return ctx.run.callback_request
"""


def test_a_rerun_links_callback_refuses_nan_but_keeps_bad_json_as_its_body(
    app, api, client, define, work, tmp_path
):
    url_file = tmp_path / "url.txt"
    define("poll", [("poll", POLL)])
    run_id = start(api, "poll", url_file=str(url_file))
    work(until=lambda: status_of(run_id) == "sleeping")
    resume = urlsplit(url_file.read_text()).path
    refused = client.post(resume, data='{"x": NaN}', content_type="application/json")
    assert refused.status_code == 400 and "NaN" in refused.json["error"]
    kept = client.post(resume, data="{not json", content_type="application/json")
    assert kept.status_code == 200
    work()
    callback = api.get(f"/api/runs/{run_id}").json["output"]
    assert callback["json"] is None and callback["body"] == "{not json"


def test_deep_json_and_nan_in_an_uploaded_file_are_form_errors(app):
    editor = Editor(app, "ed@example.com")
    for body, message in ((DEEP, "nested deeper than"), ('{"name": NaN}', "NaN is not allowed")):
        response = editor.post(
            "/workflows/import",
            {"file": (io.BytesIO(body.encode()), "wf.json"), "mode": "publish"},
            htmx=False,
            content_type="multipart/form-data",
        )
        assert response.status_code == 302
        assert f"The file is not JSON: {message}" in editor.page("/workflows")


def test_deep_json_in_a_step_tests_sample_input_is_a_field_error(app):
    editor = Editor(app, "ed@example.com")
    name = editor.create("Tested")
    editor.add(name)
    fields = {"name": "step_1", "retries": 0, "retry_delay": 5, "timeout": 900, "code": ECHO}
    response = editor.post(
        f"/workflows/{name}/steps/step_1/test", {**fields, "sample_input": '{"a": ' + DEEP + "}"}
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Not tested" in html and "nested deeper than" in html


# ------------------------------------------------------------------ chunked bodies: 413


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """The console on a real port: the test client always sends a Content-Length."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def chunked(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    # requests sends a generator as Transfer-Encoding: chunked, with no Content-Length.
    for start_at in range(0, len(body), size):
        yield body[start_at : start_at + size]


def post_chunked(url: str, body: bytes, **headers: str) -> requests.Response:
    headers = {"Content-Type": "application/json", **headers}
    return requests.post(url, data=chunked(body), headers=headers, timeout=30)


def padded(data: Any, size: int) -> bytes:
    """Valid JSON, then spaces up to ``size`` bytes, then garbage."""
    text = json.dumps(data).encode()
    return text + b" " * (size - len(text)) + b"garbage"


def test_a_chunked_body_over_the_limit_answers_413_instead_of_being_cut(app, api, define, served):
    define("echo", [("echo", ECHO)])
    url = f"{served}/api/workflows/echo/runs"
    auth = api.headers["Authorization"]
    limit = app.config["MAX_CONTENT_LENGTH"]
    small = post_chunked(url, json.dumps({"input": {"x": 1}}).encode(), Authorization=auth)
    assert small.status_code == 202, small.text
    huge = post_chunked(url, padded({"input": {"x": 2}}, 3 * 1024 * 1024), Authorization=auth)
    assert huge.status_code == 413, huge.text
    assert huge.json()["error"] == "The request body is too large"
    just_over = post_chunked(url, padded({"input": {"x": 3}}, limit), Authorization=auth)
    assert just_over.status_code == 413
    assert run_count() == 1


def test_chunked_bodies_over_the_payload_limit_answer_413_on_links_and_webhooks(
    app, api, suspended, served
):
    run_id, links = suspended
    limit = app.config["MAX_PAYLOAD_BYTES"]
    for size in (limit + 1, 3 * 1024 * 1024):
        body = padded({"ok": True}, size)
        resumed = post_chunked(served + links["resume"], body)
        assert resumed.status_code == 413, resumed.text
        assert resumed.json()["error"] == "The request body is too large"
        hooked = post_chunked(served + hook_path(api, "approval"), body)
        assert hooked.status_code == 413, hooked.text
    assert status_of(run_id) == "suspended" and run_count() == 1


# ------------------------------------- text PostgreSQL cannot store: 422 on both databases


def details(response: Any) -> dict[str, str]:
    return {d["path"]: d["message"] for d in response.json["details"]}


def definition(**fields: Any) -> dict[str, Any]:
    return {"steps": [{"name": "echo", "code": ECHO}], **fields}


def test_definition_text_over_its_limit_or_with_nul_is_422_with_its_path(app, api):
    cases = [
        (definition(title="t" * 201), "/title", "at most 200 characters"),
        (definition(title="a\x00b"), "/title", "must not contain the NUL character"),
        (definition(description="d\x00"), "/description", "must not contain the NUL character"),
        (definition(description="d" * 10_001), "/description", "at most 10000 characters"),
        (definition(note="n\x00"), "/note", "must not contain the NUL character"),
        (
            {"steps": [{"name": "echo", "code": ECHO + "#" * 100_000}]},
            "/steps/0/code",
            "at most 100000 characters",
        ),
        (
            definition(input_schema={"type": "object", "description": "\x00"}),
            "/input_schema/description",
            "must not contain the NUL character",
        ),
        (
            {"steps": [{"name": "get", "kind": "http", "config": {"url": "https://x.test/\x00"}}]},
            "/steps/0/config/url",
            "must not contain the NUL character",
        ),
    ]
    for body, path, message in cases:
        response = api.put("/api/workflows/texts", json=body)
        assert response.status_code == 422, (path, response.status_code)
        assert details(response).get(path) == message, (path, response.json)
    assert api.put("/api/workflows/texts", json=definition(title="t" * 200)).status_code == 201
    assert api.get("/api/workflows/texts").json["title"] == "t" * 200


def test_schedule_text_over_its_limit_or_with_nul_is_422_with_its_path(app, api):
    every_minute = ",".join(str(m) for m in range(60)) + " * * * *"  # a valid cron
    assert len(every_minute) == 177
    cases = [
        ({"cron": every_minute}, "/schedules/0/cron", "at most 120 characters"),
        ({"cron": "0 9 * * *\x00"}, "/schedules/0/cron", "must not contain the NUL character"),
        ({"timezone": "Europe/" + "x" * 60}, "/schedules/0/timezone", "at most 64 characters"),
        ({"timezone": "UTC\x00"}, "/schedules/0/timezone", "must not contain the NUL character"),
        (
            {"input": "def input(now):\n    return {'a': '\x00'}\n"},
            "/schedules/0/input",
            "must not contain the NUL character",
        ),
        ({"input": {"a": "\x00"}}, "/schedules/0/input/a", "must not contain the NUL character"),
    ]
    for fields, path, message in cases:
        schedule = {"name": "often", "cron": "0 9 * * *", **fields}
        response = api.put("/api/workflows/timed", json=definition(schedules=[schedule]))
        assert response.status_code == 422, (path, response.status_code)
        assert details(response).get(path) == message, (path, response.json)


def test_an_idempotency_key_with_nul_or_too_long_is_422(app, api, define):
    define("echo", [("echo", ECHO)])
    for key, message in (("k\x00", "must not contain the NUL character"), ("k" * 256, None)):
        response = api.post("/api/workflows/echo/runs", json={"idempotency_key": key})
        assert response.status_code == 422, response.json
        assert response.json["details"][0]["path"] == "/idempotency_key"
        if message:
            assert response.json["details"][0]["message"] == message
    assert run_count() == 0


def test_nul_in_a_url_or_a_form_field_is_400(app, api, client):
    for response in (
        api.get("/api/workflows/a%00b"),
        api.put("/api/workflows/a%00b", json=definition()),
        api.post("/api/workflows/a%00b/runs", json={}),
        api.get("/api/runs?workflow=a%00b"),
        client.post("/hooks/a%00b/secret", json={}),
    ):
        assert response.status_code == 400
        assert response.json["error"] == "The URL must not contain the NUL character"
    assert client.get("/tasks?workflow=a%00b").status_code == 400
    editor = Editor(app, "ed@example.com")
    created = editor.post("/workflows", {"title": "a\x00b"}, htmx=False)
    assert created.status_code == 400


def test_a_nul_inside_a_runs_json_input_is_kept(app, api, define, work):
    # JSON columns store "\u0000" as an escape (PostgreSQL's json type, not jsonb).
    define("echo", [("echo", ECHO)])
    run_id = start(api, "echo", text="a\x00b")
    work()
    run = api.get(f"/api/runs/{run_id}").json
    assert run["status"] == "completed" and run["output"] == {"text": "a\x00b"}


def test_a_nul_that_a_step_prints_logs_raises_or_emails_never_sticks_its_run(
    app, api, define, work
):
    """PostgreSQL refuses NUL in text columns: a checkpoint holding one could not be written
    and the run was replayed for ever. Log lines, errors and emails keep it as ``\\x00``; a
    task key with NUL is refused like any bad key."""
    define(
        "noisy",
        [
            (
                "talk",
                "def run(ctx):\n"
                "    print('a\\x00b')\n"
                "    ctx.logger.info('c\\x00d', where='e\\x00f')\n"
                "    ctx.send_email('x@example.com', 'sub\\x00ject', 'te\\x00xt')\n"
                "    return 'g\\x00h'",
            ),
            ("fail", "def run(ctx):\n    raise ValueError('bad\\x00news')"),
        ],
    )
    define("keys", [("key", "def run(ctx):\n    return ctx.task('a\\x00b', lambda: 1)")])
    noisy, keys = start(api, "noisy"), start(api, "keys")
    work()
    run = api.get(f"/api/runs/{noisy}").json
    assert run["status"] == "failed", run
    assert run["steps"][0]["output"] == "g\x00h"  # JSON keeps it as it was
    assert "bad\\x00news" in run["error"] and "\x00" not in run["error"]
    logs = [line["message"] for line in api.get(f"/api/runs/{noisy}/logs").json["data"]]
    assert "a\\x00b" in logs and "c\\x00d" in logs
    refused = api.get(f"/api/runs/{keys}").json
    assert refused["status"] == "failed" and "without NUL" in refused["error"]


def test_nan_in_the_tasks_pages_json_payload_is_a_form_error(app, client, api, suspended):
    run_id, _ = suspended
    create_user("op@example.com", "operator", "s3cret-pass")
    csrf = log_in(client, "op@example.com", "s3cret-pass")
    refused = act(client, csrf, run_id, "approve", payload='{"x": NaN}')
    assert "NaN is not allowed in JSON" in refused.get_data(as_text=True)
    assert status_of(run_id) == "suspended"


def test_the_cli_refuses_a_deep_file_and_a_nan_input_with_a_message(app, runner, tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    result = runner.invoke(args=["workflows", "import", str(path)])
    assert result.exit_code == 1
    assert f"{path}: not JSON the console takes: nested deeper than" in result.stderr
    started = runner.invoke(args=["runs", "start", "any", "--input", '{"x": NaN}'])
    assert started.exit_code == 1
    assert "--input is not JSON the console takes: NaN is not allowed" in started.stderr
