"""Workflow definitions (docs/definitions.md) through the API: validation, versions, drafts,
deletion."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import run_status

from .support import code, details_by_path, step

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def definition(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"steps": [step("one", "return 1")]}
    body.update(fields)
    return body


def put(api: Any, name: str, body: Any) -> Any:
    return api.put(f"/api/workflows/{name}", json=body)


def assert_invalid(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.json["error"] == "Invalid workflow definition"
    return details_by_path(response)


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("bad", ["Greet", "1greet", "greet-me", "_greet", "a" * 64, "grüß"])
def test_bad_workflow_names_are_refused(api, bad):
    response = put(api, bad, definition())
    problems = assert_invalid(response)
    assert set(problems) == {"/name"}
    assert "^[a-z][a-z0-9_]{0,62}$" in problems["/name"]
    assert api.get("/api/workflows").json["data"] == []


def test_longest_valid_name_is_accepted(api):
    name = "a" * 63
    response = put(api, name, definition())
    assert response.status_code == 201, response.json
    assert response.json["name"] == name


def test_name_in_body_must_match_the_url(api):
    problems = assert_invalid(put(api, "greet", definition(name="other")))
    assert "does not match the name in the URL" in problems["/name"]
    assert "'greet'" in problems["/name"]


def test_duplicate_step_names_are_refused(api):
    body = {"steps": [step("fetch"), step("send"), step("fetch", "return 2")]}
    problems = assert_invalid(put(api, "greet", body))
    assert problems == {"/steps/2/name": "duplicate step name 'fetch'"}


@pytest.mark.parametrize("bad_name", ["Fetch", "2fetch", "fetch-it", "", None, 7])
def test_bad_step_names_are_refused(api, bad_name):
    body = {"steps": [{"name": bad_name, "code": code()}]}
    problems = assert_invalid(put(api, "greet", body))
    assert problems == {"/steps/0/name": "must match ^[a-z][a-z0-9_]{0,62}$"}


@pytest.mark.parametrize(
    "source, message",
    [
        ("def run(ctx):\n    return (1\n", "line 2: '(' was never closed"),
        (
            "def run(ctx):\nreturn 1\n",
            "line 2: expected an indented block after function definition on line 1",
        ),
        ("def run(ctx):\n    x = 1\n     y = 2\n", "line 3: unexpected indent"),
        # Only the compiler (not the parser) finds these two.
        ("def run(ctx):\n    pass\n\nbreak\n", "line 4: 'break' outside loop"),
        ("def run(ctx):\n    return 1\nreturn 2\n", "line 3: 'return' outside function"),
    ],
)
def test_code_that_does_not_compile_is_refused_with_its_line(api, source, message):
    problems = assert_invalid(put(api, "greet", {"steps": [{"name": "one", "code": source}]}))
    assert problems == {"/steps/0/code": message}


def test_code_with_a_null_byte_names_its_line(api):
    source = "def run(ctx):\n    return 'a\x00b'\n"
    problems = assert_invalid(put(api, "greet", {"steps": [{"name": "one", "code": source}]}))
    message = problems["/steps/0/code"]
    assert message.startswith("line 2: "), message
    assert "null" in message
    assert "None" not in message


@pytest.mark.parametrize(
    "source, message",
    [
        ("def main(ctx):\n    return 1\n", "the code does not define run(ctx)"),
        ("RUN = 1\n", "the code does not define run(ctx)"),
        (
            "class Step:\n    def run(self, ctx):\n        return 1\n",
            "the code does not define run(ctx)",
        ),
        ("import os\n\ndef run():\n    return 1\n", "line 3: run must take one argument, ctx"),
        ("def run(ctx, other):\n    return 1\n", "line 1: run must take one argument, ctx"),
        ("def run(*, ctx):\n    return 1\n", "line 1: run must take one argument, ctx"),
        (
            "async def run(ctx):\n    return 1\n",
            "line 1: run(ctx) must be a plain function, not async",
        ),
    ],
)
def test_code_without_run_ctx_is_refused(api, source, message):
    problems = assert_invalid(put(api, "greet", {"steps": [{"name": "one", "code": source}]}))
    assert problems == {"/steps/0/code": message}


@pytest.mark.parametrize(
    "source",
    [
        "def run(ctx):\n    return 1\n",
        "def run(context):\n    return 1\n",
        "def run(ctx, extra=None):\n    return 1\n",
        "def run(*args):\n    return 1\n",
        "import json\n\ndef helper(x):\n    return x\n\ndef run(ctx):\n    return helper(1)\n",
    ],
)
def test_acceptable_run_signatures(api, source):
    response = put(api, "greet", {"steps": [{"name": "one", "code": source}]})
    assert response.status_code == 201, response.json


@pytest.mark.parametrize("value", ["", "   \n", None, 5])
def test_step_code_is_required(api, value):
    problems = assert_invalid(put(api, "greet", {"steps": [{"name": "one", "code": value}]}))
    assert problems == {"/steps/0/code": "is required"}


@pytest.mark.parametrize("field", ["input_schema", "output_schema"])
def test_bad_json_schema_is_refused(api, field):
    schema = {"type": "objekt", "properties": {"n": {"minimum": "x"}}, "required": "n"}
    problems = assert_invalid(put(api, "greet", definition(**{field: schema})))
    assert set(problems) == {
        f"/{field}/type",
        f"/{field}/properties/n/minimum",
        f"/{field}/required",
    }
    assert all(m.startswith("invalid JSON Schema: ") for m in problems.values())
    assert "'x' is not of type 'number'" in problems[f"/{field}/properties/n/minimum"]
    assert "'n' is not of type 'array'" in problems[f"/{field}/required"]


def test_schema_with_an_invalid_regex_is_refused(api):
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "("}}}
    problems = assert_invalid(put(api, "greet", definition(input_schema=schema)))
    assert set(problems) == {"/input_schema/properties/code/pattern"}


@pytest.mark.parametrize("schema", ["object", [], 3])
def test_schema_must_be_an_object(api, schema):
    problems = assert_invalid(put(api, "greet", definition(input_schema=schema)))
    assert problems == {"/input_schema": "must be a JSON Schema object or null"}


@pytest.mark.parametrize(
    "settings, path, message",
    [
        ({"retries": "3"}, "retries", "must be an integer"),
        ({"retries": 1.5}, "retries", "must be an integer"),
        ({"retries": True}, "retries", "must be an integer"),
        ({"retries": None}, "retries", "must be an integer"),
        ({"retries": -1}, "retries", "must be between 0 and 100"),
        ({"retries": 101}, "retries", "must be between 0 and 100"),
        ({"timeout": "60"}, "timeout", "must be a number"),
        ({"timeout": False}, "timeout", "must be a number"),
        ({"timeout": 0}, "timeout", "must be between 1 and 604800"),
        ({"timeout": 7 * 86400 + 1}, "timeout", "must be between 1 and 604800"),
        ({"retry_delay": "5s"}, "retry_delay", "must be a number"),
        ({"retry_delay": -0.5}, "retry_delay", "must be between 0 and 86400"),
        ({"execute_when_recovering": "yes"}, "execute_when_recovering", "must be true or false"),
    ],
)
def test_bad_step_settings_are_refused(api, settings, path, message):
    problems = assert_invalid(put(api, "greet", {"steps": [step("one", **settings)]}))
    assert problems == {f"/steps/0/{path}": message}


def test_fractional_timeout_and_retry_delay_are_accepted(api):
    response = put(api, "greet", {"steps": [step("one", timeout=2.5, retry_delay=0.1)]})
    assert response.status_code == 201, response.json
    saved = api.get("/api/workflows/greet").json["steps"][0]
    assert saved["timeout"] == 2.5
    assert saved["retry_delay"] == 0.1


def test_unknown_fields_are_refused(api):
    body = definition(colour="blue", stepz=[])
    body["steps"] = [dict(step("one"), retry=3)]
    problems = assert_invalid(put(api, "greet", body))
    assert problems == {
        "/colour": "unknown field",
        "/stepz": "unknown field",
        "/steps/0/retry": "unknown field",
    }


@pytest.mark.parametrize(
    "steps, message",
    [
        (None, "must be a non-empty list of steps"),
        ([], "must be a non-empty list of steps"),
        ({"one": "def run(ctx): pass"}, "must be a non-empty list of steps"),
    ],
)
def test_steps_are_required(api, steps, message):
    body = {"steps": steps} if steps is not None else {}
    problems = assert_invalid(put(api, "greet", body))
    assert problems == {"/steps": message}


def test_a_step_must_be_an_object(api):
    problems = assert_invalid(put(api, "greet", {"steps": ["def run(ctx): pass"]}))
    assert problems == {"/steps/0": "must be an object"}


def test_bad_schedules_are_refused(api):
    body = definition(
        schedules=[
            {"name": "daily", "cron": "every day", "timezone": "Mars/Olympus"},
            {"name": "daily", "cron": "0 9 * * *", "input": "def make(now):\n    return {}\n"},
            {"name": "hourly", "cron": "0 * * * *", "input": [1], "enabled": "yes", "when": 1},
        ]
    )
    problems = assert_invalid(put(api, "greet", body))
    assert problems == {
        "/schedules/0/cron": "must have 5 fields (minute hour day-of-month month day-of-week), "
        "not 2: for example 0 9 * * *",
        "/schedules/0/timezone": "unknown timezone 'Mars/Olympus' (use an IANA name such as "
        "Asia/Seoul)",
        "/schedules/1/input": "the snippet does not define input(now)",
        "/schedules/1/name": "duplicate schedule name 'daily'",
        "/schedules/2/input": "must be a JSON object or a snippet defining input(now)",
        "/schedules/2/enabled": "must be true or false",
        "/schedules/2/when": "unknown field",
    }


def test_every_problem_is_reported_at_once(api):
    body = {
        "title": 5,
        "description": ["x"],
        "version": "v 2",
        "input_schema": {"type": "objekt"},
        "output_schema": "nope",
        "colour": "red",
        "steps": [
            {"name": "one", "code": "def run(ctx):\n    return (\n"},
            {"name": "two", "code": "print('hi')\n", "retries": "x", "timeout": 0},
            {"name": "one", "code": code(), "retyr": 1},
        ],
    }
    response = put(api, "greet", body)
    problems = assert_invalid(response)
    assert len(response.json["details"]) == len(problems)
    assert problems == {
        "/colour": "unknown field",
        "/title": "must be a string",
        "/description": "must be a string",
        "/version": 'must be a label such as "v2" (letters, digits, . _ -)',
        "/input_schema/type": problems["/input_schema/type"],
        "/output_schema": "must be a JSON Schema object or null",
        "/steps/0/code": "line 2: '(' was never closed",
        "/steps/1/code": "the code does not define run(ctx)",
        "/steps/1/retries": "must be an integer",
        "/steps/1/timeout": "must be between 1 and 604800",
        "/steps/2/retyr": "unknown field",
        "/steps/2/name": "duplicate step name 'one'",
    }
    assert problems["/input_schema/type"].startswith("invalid JSON Schema")
    # Nothing was saved.
    assert api.get("/api/workflows/greet").status_code == 404


@pytest.mark.parametrize("body", [[{"steps": []}], "a string", 3])
def test_a_definition_must_be_an_object(api, body):
    response = put(api, "greet", body)
    assert response.status_code == 422
    assert response.json["error"] == "A workflow definition must be a JSON object"


def test_a_body_that_is_not_json_is_refused(api):
    response = api.put(
        "/api/workflows/greet", data="steps: []", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 400
    assert "must be JSON" in response.json["error"]
    assert response.json["details"] == []


@pytest.mark.parametrize("publish", ["no", 0, None])
def test_publish_must_be_a_boolean(api, publish):
    response = put(api, "greet", definition(publish=publish))
    assert response.status_code == 422
    assert response.json["error"] == "publish must be true or false"


# --------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "title, name",
    [
        ("Send welcome email", "send_welcome_email"),
        ("  Send   Welcome-Email!  ", "send_welcome_email"),
        ("CRM: sync (nightly)", "crm_sync_nightly"),
        ("2nd reminder", "w_2nd_reminder"),
        ("Über Café", "uber_cafe"),
    ],
)
def test_name_is_the_title_in_snake_case(runner, tmp_path, api, title, name):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"title": title, "steps": [step()]}))
    result = runner.invoke(args=["workflows", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{name} v1 (published)" in result.output
    shown = api.get(f"/api/workflows/{name}")
    assert shown.status_code == 200
    assert shown.json["name"] == name
    assert shown.json["title"] == title


def test_title_without_a_usable_name_is_refused(runner, tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"title": "!!!", "steps": [step()]}))
    result = runner.invoke(args=["workflows", "import", str(path)])
    assert result.exit_code == 1
    assert "/name: must match ^[a-z][a-z0-9_]{0,62}$ (or give a title)" in result.output


def test_put_names_the_workflow_by_its_url_even_with_a_title(api):
    response = put(api, "onboarding", definition(title="Send welcome email"))
    assert response.status_code == 201, response.json
    assert response.json["name"] == "onboarding"
    shown = api.get("/api/workflows/onboarding").json
    assert shown["name"] == "onboarding"
    assert shown["title"] == "Send welcome email"
    assert api.get("/api/workflows/send_welcome_email").status_code == 404


def test_title_defaults_from_the_name(api):
    assert put(api, "send_report", definition()).status_code == 201
    assert api.get("/api/workflows/send_report").json["title"] == "Send report"


# ------------------------------------------------------------------------------ versions


def test_put_creates_v1_then_identical_publishes_nothing_and_changed_publishes_v2(api):
    first = put(api, "greet", definition())
    assert first.status_code == 201
    assert first.json == {"name": "greet", "version": "v1", "published": True}

    same = put(api, "greet", definition())
    assert same.status_code == 200
    assert same.json == {"name": "greet", "version": "v1", "published": False}

    # Spelling out the defaults is still the same definition.
    explicit = put(
        api,
        "greet",
        {
            "steps": [
                step("one", retries=0, retry_delay=5, timeout=900, execute_when_recovering=False)
            ],
            "schedules": [],
        },
    )
    assert explicit.json == {"name": "greet", "version": "v1", "published": False}

    changed = put(api, "greet", {"steps": [step("one", "return 2")]})
    assert changed.status_code == 200
    assert changed.json == {"name": "greet", "version": "v2", "published": True}

    again = put(api, "greet", {"steps": [step("one", "return 2")]})
    assert again.json == {"name": "greet", "version": "v2", "published": False}

    shown = api.get("/api/workflows/greet").json
    assert shown["version"] == "v2"
    assert [v["label"] for v in shown["versions"]] == ["v1", "v2"]


def test_changing_only_the_title_publishes_a_new_version(api):
    put(api, "greet", definition(title="Greet"))
    response = put(api, "greet", definition(title="Greet people"))
    assert response.json == {"name": "greet", "version": "v2", "published": True}
    assert api.get("/api/workflows/greet").json["title"] == "Greet people"


def test_publish_false_saves_a_draft_without_a_version(api):
    response = put(api, "greet", definition(publish=False, title="Greet (draft)"))
    assert response.status_code == 201
    assert response.json == {"name": "greet", "version": None, "published": False}

    listed = api.get("/api/workflows").json["data"]
    assert [(w["name"], w["latest_version"], w["has_draft"]) for w in listed] == [
        ("greet", None, True)
    ]
    shown = api.get("/api/workflows/greet").json
    assert shown["versions"] == []
    assert shown["draft"]["title"] == "Greet (draft)"
    assert shown["draft"]["steps"][0]["code"] == code("return 1")

    # A draft cannot be run.
    started = api.post("/api/workflows/greet/runs", json={"input": {}})
    assert started.status_code == 409
    assert "no published version" in started.json["error"]

    published = put(api, "greet", definition(title="Greet"))
    assert published.json == {"name": "greet", "version": "v1", "published": True}
    shown = api.get("/api/workflows/greet").json
    assert shown["draft"] is None
    assert shown["title"] == "Greet"


def test_publishing_what_is_already_published_discards_the_draft(api):
    put(api, "greet", definition())
    put(api, "greet", {"steps": [step("one", "return 2")], "publish": False})
    assert api.get("/api/workflows/greet").json["draft"] is not None
    same = put(api, "greet", definition())
    assert same.json == {"name": "greet", "version": "v1", "published": False}
    shown = api.get("/api/workflows/greet").json
    assert shown["draft"] is None
    assert [v["label"] for v in shown["versions"]] == ["v1"]


def test_a_draft_of_a_published_workflow_leaves_the_published_version_alone(api, work):
    put(api, "greet", definition(title="Greet", description="Says hello"))
    draft = put(
        api,
        "greet",
        {
            "title": "Greet v2",
            "description": "WIP",
            "publish": False,
            "steps": [step("one", "return 'draft'")],
        },
    )
    assert draft.status_code == 200
    assert draft.json == {"name": "greet", "version": "v1", "published": False}

    listed = api.get("/api/workflows").json["data"][0]
    assert listed["latest_version"] == "v1"
    assert listed["title"] == "Greet"
    assert listed["description"] == "Says hello"
    assert listed["has_draft"] is True

    shown = api.get("/api/workflows/greet").json
    assert shown["title"] == "Greet"
    assert shown["version"] == "v1"
    assert [v["label"] for v in shown["versions"]] == ["v1"]
    assert shown["draft"]["title"] == "Greet v2"

    run = api.post("/api/workflows/greet/runs", json={}).json
    assert run["version"] == "v1"
    work()
    assert api.get(f"/api/runs/{run['id']}").json["output"] == 1


def test_explicit_version_labels_and_duplicate_label_refused(api):
    first = put(api, "greet", definition(version="2024.06-rc1", note="first cut"))
    assert first.status_code == 201
    assert first.json == {"name": "greet", "version": "2024.06-rc1", "published": True}

    duplicate = put(api, "greet", {"version": "2024.06-rc1", "steps": [step("one", "return 2")]})
    assert duplicate.status_code == 409
    assert "2024.06-rc1" in duplicate.json["error"]
    assert duplicate.json["details"] == []
    shown = api.get("/api/workflows/greet").json
    assert [v["label"] for v in shown["versions"]] == ["2024.06-rc1"]
    assert shown["steps"][0]["code"] == code("return 1")

    # Numbered labels go on from the number of versions.
    numbered = put(api, "greet", {"steps": [step("one", "return 3")]})
    assert numbered.json == {"name": "greet", "version": "v2", "published": True}

    version = api.get("/api/workflows/greet/versions/2024.06-rc1").json
    assert version["version"] == "2024.06-rc1"
    assert version["note"] == "first cut"


def test_automatic_label_skips_a_label_given_explicitly(api):
    assert put(api, "greet", definition(version="v2")).json["version"] == "v2"
    response = put(api, "greet", {"steps": [step("one", "return 2")]})
    assert response.status_code == 200, response.json
    assert response.json == {"name": "greet", "version": "v3", "published": True}
    labels = [v["label"] for v in api.get("/api/workflows/greet").json["versions"]]
    assert labels == ["v2", "v3"]


@pytest.mark.parametrize("label", ["v 2", "", "-v2", "a" * 41, 2])
def test_bad_version_labels_are_refused(api, label):
    problems = assert_invalid(put(api, "greet", definition(version=label)))
    assert set(problems) == {"/version"}


# -------------------------------------------------------------------------------- reading


def test_list_workflows(api):
    assert api.get("/api/workflows").json == {"data": []}
    put(api, "zeta", definition(title="Zeta", description="last"))
    put(api, "alpha", {"steps": [step("one"), step("two")]})
    put(api, "alpha", {"steps": [step("one"), step("two"), step("three")]})
    response = api.get("/api/workflows")
    assert response.status_code == 200
    data = response.json["data"]
    assert [w["name"] for w in data] == ["alpha", "zeta"]
    alpha, zeta = data
    assert alpha["latest_version"] == "v2"
    assert alpha["steps"] == 3
    assert alpha["title"] == "Alpha"
    assert alpha["has_draft"] is False
    assert ISO_UTC.match(alpha["published_at"])
    assert ISO_UTC.match(alpha["updated_at"])
    assert zeta["latest_version"] == "v1"
    assert zeta["description"] == "last"


def test_get_workflow_has_the_definition_at_the_top_level_and_versions(api):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    body = {
        "title": "Greet",
        "description": "Says hi",
        "input_schema": schema,
        "output_schema": {"type": "integer"},
        "steps": [step("one", "return ctx.input['n']", retries=2, timeout=30)],
        "schedules": [{"name": "daily", "cron": "0 9 * * *", "timezone": "Asia/Seoul"}],
    }
    put(api, "greet", body)
    shown = api.get("/api/workflows/greet")
    assert shown.status_code == 200
    data = shown.json
    assert data["name"] == "greet"
    assert data["title"] == "Greet"
    assert data["description"] == "Says hi"
    assert data["version"] == "v1"
    assert data["input_schema"] == schema
    assert data["output_schema"] == {"type": "integer"}
    assert data["steps"] == [
        {
            "name": "one",
            "code": code("return ctx.input['n']"),
            "retries": 2,
            "retry_delay": 5,
            "timeout": 30,
            "execute_when_recovering": False,
        }
    ]
    assert data["schedules"] == [
        {
            "name": "daily",
            "cron": "0 9 * * *",
            "timezone": "Asia/Seoul",
            "input": {},
            "enabled": True,
        }
    ]
    assert len(data["versions"]) == 1
    version = data["versions"][0]
    assert {"label", "published_at", "active_runs"} <= set(version)
    assert version["label"] == "v1"
    assert version["active_runs"] == 0
    assert ISO_UTC.match(version["published_at"])


def test_active_runs_per_version(api):
    put(api, "greet", definition())
    first = api.post("/api/workflows/greet/runs", json={}).json
    api.post("/api/workflows/greet/runs", json={})
    put(api, "greet", {"steps": [step("one", "return 2")]})
    api.post("/api/workflows/greet/runs", json={})
    api.post(f"/api/runs/{first['id']}/cancel")

    versions = api.get("/api/workflows/greet").json["versions"]
    assert [(v["label"], v["active_runs"]) for v in versions] == [("v1", 1), ("v2", 1)]


def test_unknown_workflow_is_404(api):
    for path in ("/api/workflows/nope", "/api/workflows/nope/versions/v1"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json["error"] == "No workflow named 'nope'"
        assert response.json["details"] == []


def test_get_a_version(api):
    put(api, "greet", definition(title="Greet", note="initial"))
    put(api, "greet", definition(title="Greet", steps=[step("one", "return 2")]))
    v1 = api.get("/api/workflows/greet/versions/v1")
    assert v1.status_code == 200
    assert v1.json["version"] == "v1"
    assert v1.json["name"] == "greet"
    assert v1.json["steps"][0]["code"] == code("return 1")
    assert v1.json["note"] == "initial"
    assert ISO_UTC.match(v1.json["published_at"])
    v2 = api.get("/api/workflows/greet/versions/v2").json
    assert v2["version"] == "v2"
    assert v2["steps"][0]["code"] == code("return 2")

    missing = api.get("/api/workflows/greet/versions/v9")
    assert missing.status_code == 404
    assert missing.json["error"] == "Workflow 'greet' has no version 'v9'"


# ------------------------------------------------------------------------------- deletion


def test_delete_version_refused_while_a_run_uses_it(api, make_api):
    put(api, "greet", definition())
    put(api, "greet", {"steps": [step("one", "return 2")]})
    run = api.post("/api/workflows/greet/runs", json={"version": "v1"}).json
    assert run["version"] == "v1"

    refused = api.delete("/api/workflows/greet/versions/v1")
    assert refused.status_code == 409
    assert "v1" in refused.json["error"]
    assert run["id"] in refused.json["error"]
    assert api.get("/api/workflows/greet/versions/v1").status_code == 200

    paused = api.post(f"/api/runs/{run['id']}/pause").json
    assert paused["status"] == "paused"
    assert api.delete("/api/workflows/greet/versions/v1").status_code == 409

    assert api.post(f"/api/runs/{run['id']}/cancel").json["status"] == "canceled"
    deleted = api.delete("/api/workflows/greet/versions/v1")
    assert deleted.status_code == 200
    assert deleted.json == {"name": "greet", "version": "v1", "deleted": True}

    gone = api.get("/api/workflows/greet/versions/v1")
    assert gone.status_code == 404
    assert api.delete("/api/workflows/greet/versions/v1").status_code == 404
    assert [v["label"] for v in api.get("/api/workflows/greet").json["versions"]] == ["v2"]
    start_old = api.post("/api/workflows/greet/runs", json={"version": "v1"})
    assert start_old.status_code == 404
    # The canceled run still shows the version it ran on.
    assert api.get(f"/api/runs/{run['id']}").json["version"] == "v1"

    # Only editors delete versions.
    operator = make_api("operator")
    assert operator.delete("/api/workflows/greet/versions/v2").status_code == 403


def test_delete_version_after_its_runs_completed(api, work):
    put(api, "greet", definition())
    put(api, "greet", {"steps": [step("one", "return 2")]})
    run = api.post("/api/workflows/greet/runs", json={"version": "v1"}).json
    work()
    assert run_status(run["id"]) == "completed"
    assert api.delete("/api/workflows/greet/versions/v1").status_code == 200
    assert api.get("/api/workflows/greet/versions/v1").status_code == 404


def test_deleting_the_latest_version_falls_back_to_the_previous(api, work):
    put(api, "greet", definition())
    put(api, "greet", {"steps": [step("one", "return 2")]})
    assert api.delete("/api/workflows/greet/versions/v2").status_code == 200
    shown = api.get("/api/workflows/greet").json
    assert shown["version"] == "v1"
    assert api.get("/api/workflows").json["data"][0]["latest_version"] == "v1"
    run = api.post("/api/workflows/greet/runs", json={}).json
    assert run["version"] == "v1"
    # Labels are never reused, even once deleted.
    again = put(api, "greet", {"steps": [step("one", "return 3")]})
    assert again.json["published"] is True
    assert again.json["version"] not in ("v1", "v2")


# ---------------------------------------------------------------------- pinned versions


def test_a_run_finishes_on_the_version_it_started_with(api, work):
    put(
        api,
        "greet",
        {
            "steps": [
                step("one", "return 'one-v1'"),
                step("two", "return ctx.steps.one.output + ' two-v1'"),
            ]
        },
    )
    old = api.post("/api/workflows/greet/runs", json={}).json
    assert old["version"] == "v1"

    published = put(
        api, "greet", {"steps": [step("one", "return 'one-v2'"), step("two", "return 'two-v2'")]}
    )
    assert published.json["version"] == "v2"
    new = api.post("/api/workflows/greet/runs", json={}).json
    assert new["version"] == "v2"
    pinned = api.post("/api/workflows/greet/runs", json={"version": "v1"}).json
    assert pinned["version"] == "v1"

    work()
    old_run = api.get(f"/api/runs/{old['id']}").json
    assert old_run["status"] == "completed"
    assert old_run["version"] == "v1"
    assert old_run["output"] == "one-v1 two-v1"
    new_run = api.get(f"/api/runs/{new['id']}").json
    assert new_run["version"] == "v2"
    assert new_run["output"] == "two-v2"
    assert api.get(f"/api/runs/{pinned['id']}").json["output"] == "one-v1 two-v1"


def test_a_run_keeps_its_version_across_a_publish_between_its_steps(api, work):
    put(api, "greet", {"steps": [step("one", "return 'a'"), step("two", "return 'b'")]})
    run = api.post("/api/workflows/greet/runs", json={}).json
    api.post(f"/api/runs/{run['id']}/pause")
    put(
        api,
        "greet",
        {
            "steps": [
                step("one", "return 'x'"),
                step("two", "return 'y'"),
                step("three", "return 'z'"),
            ]
        },
    )
    api.post(f"/api/runs/{run['id']}/resume")
    work()
    shown = api.get(f"/api/runs/{run['id']}").json
    assert shown["version"] == "v1"
    assert shown["output"] == "b"
    assert [s["name"] for s in shown["steps"]] == ["one", "two"]


def test_a_run_with_an_unknown_version_is_404(api):
    put(api, "greet", definition())
    response = api.post("/api/workflows/greet/runs", json={"version": "v7"})
    assert response.status_code == 404
    assert response.json["error"] == "Workflow 'greet' has no version 'v7'"


# --------------------------------------------------------------------------------- roles


def test_only_editors_publish(make_api):
    for role_name, expected in (("viewer", 403), ("operator", 403), ("editor", 201)):
        client = make_api(role_name)
        response = put(client, f"by_{role_name}", definition())
        assert response.status_code == expected, (role_name, response.json)
        if expected == 403:
            assert response.json["error"] == (f"This needs the editor role; you are {role_name}")
