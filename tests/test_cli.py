"""The commands (docs/commands.md), through Flask's CLI runner: what a user reads and the exit
codes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from console.extensions import db
from console.models import User
from tests.conftest import run_status

from .support import code, log_in, step

RUN_LINE = re.compile(r"^Started run ([0-9a-z]{26}) \((\w+) (\S+)\)$", re.M)


def invoke(runner: Any, *args: str) -> Any:
    return runner.invoke(args=list(args))


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return str(path)


def greet_definition(**fields: Any) -> dict[str, Any]:
    return {
        "name": "greet",
        "title": "Greet someone",
        "description": "Says hello",
        "input_schema": {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
        },
        "steps": [
            step("one", "return ctx.input['n'] * 2", retries=1, timeout=30),
            step("two", "return ctx.steps.one.output + 1"),
        ],
        "schedules": [
            {
                "name": "daily",
                "cron": "0 9 * * *",
                "timezone": "Asia/Seoul",
                "input": {"n": 1},
                "enabled": False,
            }
        ],
        **fields,
    }


@pytest.fixture
def greet(runner: Any, tmp_path: Path) -> str:
    result = invoke(
        runner, "workflows", "import", write(tmp_path, "greet.json", greet_definition())
    )
    assert result.exit_code == 0, result.output
    return "greet"


def start_run(runner: Any, *args: str) -> str:
    result = invoke(runner, "runs", "start", *args)
    assert result.exit_code == 0, result.output
    match = RUN_LINE.search(result.stdout)
    assert match, result.stdout
    return match.group(1)


# --------------------------------------------------------------------------------- users


def test_users_create_with_a_password(runner, client):
    result = invoke(
        runner,
        "users",
        "create",
        "Ann@Example.com",
        "--role",
        "editor",
        "--password",
        "correct-horse",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Created ann@example.com (editor).\n"
    assert "correct-horse" not in result.output
    user = db.session.scalar(select(User).filter_by(email="ann@example.com"))
    assert user.role == "editor"
    log_in(client, "ann@example.com", "correct-horse")
    assert client.get("/api/workflows").status_code == 200


def test_users_create_generates_and_prints_a_password(runner, client):
    result = invoke(runner, "users", "create", "bob@example.com")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Created bob@example.com (viewer)."
    assert lines[1].startswith("Password: ")
    password = lines[1][len("Password: ") :]
    assert len(password) >= 12
    log_in(client, "bob@example.com", password)
    assert client.get("/api/runs").status_code == 200


def test_users_password_prints_a_new_one_that_logs_in(runner, client, app):
    assert (
        invoke(runner, "users", "create", "ann@example.com", "--password", "old-pass1").exit_code
        == 0
    )
    result = invoke(runner, "users", "password", "Ann@Example.com")
    assert result.exit_code == 0, result.output
    heading, password = result.stdout.splitlines()
    assert heading == "New password for ann@example.com (viewer); it is shown only once:"
    log_in(client, "ann@example.com", password)
    assert client.get("/api/runs").status_code == 200
    with app.app_context(), pytest.raises(AssertionError, match="Wrong email or password"):
        log_in(app.test_client(), "ann@example.com", "old-pass1")  # the old one no longer works
    missing = invoke(runner, "users", "password", "nobody@example.com")
    assert (
        missing.exit_code == 1
        and missing.stderr == "Error: no user with email nobody@example.com\n"
    )


def test_flask_up_says_how_to_log_in_every_time(app):
    from workers.cli import how_to_log_in

    first = how_to_log_in()
    assert first.startswith("Log in as admin@localhost with password ")
    again = how_to_log_in()
    assert "flask users password EMAIL" in again
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_users_create_refuses_a_duplicate(runner):
    assert invoke(runner, "users", "create", "ann@example.com").exit_code == 0
    result = invoke(runner, "users", "create", "ANN@example.com", "--role", "admin")
    assert result.exit_code == 1
    assert result.stderr == "Error: a user with email ann@example.com already exists\n"
    assert result.stdout == ""
    users = db.session.scalars(select(User)).all()
    assert [(u.email, u.role) for u in users] == [("ann@example.com", "viewer")]


@pytest.mark.parametrize("email", ["bob", "bob@", "@example.com", "bob smith@example.com"])
def test_users_create_refuses_what_is_not_an_email(runner, email):
    result = invoke(runner, "users", "create", email, "--password", "pw-123456")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert "is not an email address" in result.stderr
    assert db.session.scalars(select(User)).all() == []


def test_users_create_refuses_an_unknown_role(runner):
    result = invoke(runner, "users", "create", "ann@example.com", "--role", "boss")
    assert result.exit_code == 2
    assert "'boss' is not one of" in result.stderr
    assert db.session.scalars(select(User)).all() == []


# -------------------------------------------------------------------------------- tokens


def test_tokens_create_prints_a_working_token_last(runner, client, greet):
    invoke(
        runner,
        "users",
        "create",
        "ops@example.com",
        "--role",
        "operator",
        "--password",
        "pw-123456",
    )
    result = invoke(runner, "tokens", "create", "OPS@example.com")
    assert result.exit_code == 0, result.output
    token = result.stdout.splitlines()[-1]
    assert token.startswith("wfc_")
    assert len(token) > 40
    headers = {"Authorization": f"Bearer {token}"}
    listed = client.get("/api/workflows", headers=headers)
    assert listed.status_code == 200
    assert [w["name"] for w in listed.json["data"]] == ["greet"]
    started = client.post("/api/workflows/greet/runs", json={"input": {"n": 1}}, headers=headers)
    assert started.status_code == 202
    # The operator's token cannot edit.
    assert (
        client.put("/api/workflows/greet", json=greet_definition(), headers=headers).status_code
        == 403
    )

    second = invoke(runner, "tokens", "create", "ops@example.com").stdout.splitlines()[-1]
    assert second != token
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_tokens_create_for_an_unknown_user(runner):
    result = invoke(runner, "tokens", "create", "ghost@example.com")
    assert result.exit_code == 1
    assert result.stderr == "Error: no user with email ghost@example.com\n"
    assert result.stdout == ""


# ----------------------------------------------------------------------------- workflows


def test_workflows_import_a_good_file(runner, tmp_path, api):
    path = write(tmp_path, "greet.json", greet_definition())
    result = invoke(runner, "workflows", "import", path)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: greet v1 (published)\n"
    shown = api.get("/api/workflows/greet").json
    assert shown["title"] == "Greet someone"
    assert [s["name"] for s in shown["steps"]] == ["one", "two"]

    again = invoke(runner, "workflows", "import", path)
    assert again.exit_code == 0
    assert again.stdout == f"{path}: greet v1 (unchanged)\n"

    changed = write(tmp_path, "greet2.json", greet_definition(description="Says hi"))
    third = invoke(runner, "workflows", "import", changed)
    assert third.stdout == f"{changed}: greet v2 (published)\n"


def test_workflows_import_a_bad_file(runner, tmp_path, api):
    bad = greet_definition(colour="red")
    bad["steps"][0]["code"] = "def run(ctx):\n    return (\n"
    bad["steps"][1]["retries"] = "three"
    path = write(tmp_path, "bad.json", bad)
    result = invoke(runner, "workflows", "import", path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}: Invalid workflow definition",
        "  /colour: unknown field",
        "  /steps/0/code: line 2: '(' was never closed",
        "  /steps/1/retries: must be an integer",
    ]
    assert api.get("/api/workflows").json["data"] == []


def test_workflows_import_a_file_that_is_not_json(runner, tmp_path):
    path = write(tmp_path, "broken.json", '{"name": "greet",\n "steps": [}\n')
    result = invoke(runner, "workflows", "import", path)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{path}: not JSON: line 2: ")


def test_workflows_import_a_file_that_is_not_utf8(runner, tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"title": "Café", "steps": []}'.encode("latin-1"))
    result = invoke(runner, "workflows", "import", str(path))
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr == f"{path}: not UTF-8 text\n"


def test_workflows_import_a_file_that_is_not_an_object(runner, tmp_path):
    path = write(tmp_path, "list.json", [greet_definition()])
    result = invoke(runner, "workflows", "import", path)
    assert result.exit_code == 1
    assert result.stderr == f"{path}: A workflow definition must be a JSON object\n"


def test_workflows_import_several_files_reports_each(runner, tmp_path, api):
    good = write(tmp_path, "good.json", greet_definition())
    bad = write(tmp_path, "bad.json", {"name": "Bad Name", "steps": [step()]})
    other = write(tmp_path, "other.json", {"title": "Other flow", "steps": [step()]})
    result = invoke(runner, "workflows", "import", good, bad, other)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{good}: greet v1 (published)",
        f"{other}: other_flow v1 (published)",
    ]
    assert f"{bad}: Invalid workflow definition" in result.stderr
    assert "  /name: must match ^[a-z][a-z0-9_]{0,62}$" in result.stderr
    names = [w["name"] for w in api.get("/api/workflows").json["data"]]
    assert names == ["greet", "other_flow"]


def test_workflows_import_a_missing_file(runner, tmp_path):
    result = invoke(runner, "workflows", "import", str(tmp_path / "nope.json"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_workflows_import_a_duplicate_label(runner, tmp_path):
    first = write(tmp_path, "a.json", greet_definition(version="release-1"))
    assert invoke(runner, "workflows", "import", first).exit_code == 0
    second = write(tmp_path, "b.json", greet_definition(version="release-1", description="changed"))
    result = invoke(runner, "workflows", "import", second)
    assert result.exit_code == 1
    assert "'release-1'" in result.stderr
    assert "already exists" in result.stderr


def test_workflows_export_round_trips(runner, tmp_path, greet, api):
    result = invoke(runner, "workflows", "export", "greet")
    assert result.exit_code == 0, result.output
    exported = json.loads(result.stdout)
    expected = greet_definition()
    for key in ("name", "title", "description", "input_schema", "schedules"):
        assert exported[key] == expected[key], key
    assert exported["version"] == "v1"
    assert exported["output_schema"] is None
    assert exported["steps"][0] == {
        "name": "one",
        "code": code("return ctx.input['n'] * 2"),
        "retries": 1,
        "retry_delay": 5,
        "timeout": 30,
        "execute_when_recovering": False,
    }
    version = api.get("/api/workflows/greet/versions/v1").json
    # A version has no schedules (they are workflow state); the export adds the current ones.
    assert {k: v for k, v in exported.items() if k != "schedules"} == {
        k: v for k, v in version.items() if k not in ("published_at", "note")
    }

    # Importing the export back changes nothing.
    path = write(tmp_path, "exported.json", result.stdout)
    again = invoke(runner, "workflows", "import", path)
    assert again.exit_code == 0, again.output
    assert again.stdout == f"{path}: greet v1 (unchanged)\n"

    # Under another name it is the same workflow.
    copy = dict(exported, name="greet_copy", version=None)
    copy_path = write(tmp_path, "copy.json", copy)
    assert invoke(runner, "workflows", "import", copy_path).stdout == (
        f"{copy_path}: greet_copy v1 (published)\n"
    )
    copied = json.loads(invoke(runner, "workflows", "export", "greet_copy").stdout)
    assert dict(copied, name="greet") == exported


def test_workflows_export_a_version(runner, tmp_path, greet):
    path = write(tmp_path, "v2.json", greet_definition(description="second"))
    assert invoke(runner, "workflows", "import", path).exit_code == 0

    latest = json.loads(invoke(runner, "workflows", "export", "greet").stdout)
    assert (latest["version"], latest["description"]) == ("v2", "second")
    first = invoke(runner, "workflows", "export", "greet", "--version", "v1")
    assert first.exit_code == 0
    data = json.loads(first.stdout)
    assert (data["version"], data["description"]) == ("v1", "Says hello")


def test_workflows_export_errors(runner, greet):
    unknown = invoke(runner, "workflows", "export", "nope")
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: No workflow named 'nope'\n"
    assert unknown.stdout == ""
    no_version = invoke(runner, "workflows", "export", "greet", "--version", "v9")
    assert no_version.exit_code == 1
    assert no_version.stderr == "Error: Workflow 'greet' has no version 'v9'\n"


def test_workflows_list(runner, tmp_path):
    empty = invoke(runner, "workflows", "list")
    assert empty.exit_code == 0
    assert empty.stdout == "No workflows. Import one with: flask workflows import FILE\n"

    invoke(runner, "workflows", "import", write(tmp_path, "g.json", greet_definition()))
    invoke(
        runner,
        "workflows",
        "import",
        write(tmp_path, "g2.json", greet_definition(description="v2")),
    )
    invoke(
        runner,
        "workflows",
        "import",
        write(tmp_path, "a.json", {"title": "Archive logs", "steps": [step()]}),
    )
    result = invoke(runner, "workflows", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split() == ["archive_logs", "v1", "1", "steps", "Archive", "logs"]
    assert lines[1].split() == ["greet", "v2", "2", "steps", "Greet", "someone"]


# ---------------------------------------------------------------------------------- runs


def test_runs_start_then_show(runner, greet, work):
    result = invoke(runner, "runs", "start", "greet", "--input", '{"n": 5}')
    assert result.exit_code == 0, result.output
    match = RUN_LINE.fullmatch(result.stdout.strip())
    assert match, result.stdout
    run_id, name, label = match.groups()
    assert (name, label) == ("greet", "v1")

    shown = invoke(runner, "runs", "show", run_id)
    assert shown.exit_code == 0
    data = json.loads(shown.stdout)
    assert data["id"] == run_id
    assert data["status"] == "pending"
    assert data["trigger"] == "manual"
    assert data["input"] == {"n": 5}
    assert [s["status"] for s in data["steps"]] == ["pending", "pending"]

    work()
    done = json.loads(invoke(runner, "runs", "show", run_id).stdout)
    assert done["status"] == "completed"
    assert done["output"] == 11
    assert [s["output"] for s in done["steps"]] == [10, 11]
    assert done["finished_at"].endswith("Z")


def test_runs_start_a_version(runner, tmp_path, greet, work):
    changed = greet_definition()
    changed["steps"][1]["code"] = code("return 'v2'")
    invoke(runner, "workflows", "import", write(tmp_path, "v2.json", changed))
    run_id = start_run(runner, "greet", "--input", '{"n": 1}', "--version", "v1")
    latest = start_run(runner, "greet", "--input", '{"n": 1}')
    work()
    assert json.loads(invoke(runner, "runs", "show", run_id).stdout)["output"] == 3
    assert json.loads(invoke(runner, "runs", "show", latest).stdout)["output"] == "v2"


def test_runs_pause_resume_cancel(runner, greet, work):
    run_id = start_run(runner, "greet", "--input", '{"n": 1}')

    paused = invoke(runner, "runs", "pause", run_id)
    assert paused.exit_code == 0, paused.output
    assert paused.stdout == f"{run_id} paused\n"
    assert invoke(runner, "runs", "pause", run_id).stdout == f"{run_id} paused\n"
    work(until=lambda: True)
    assert run_status(run_id) == "paused"

    resumed = invoke(runner, "runs", "resume", run_id)
    assert resumed.exit_code == 0
    assert resumed.stdout == f"{run_id} pending\n"

    canceled = invoke(runner, "runs", "cancel", run_id)
    assert canceled.exit_code == 0
    assert canceled.stdout == f"{run_id} canceled\n"
    work()
    assert run_status(run_id) == "canceled"

    for action in ("pause", "resume", "cancel"):
        refused = invoke(runner, "runs", action, run_id)
        assert refused.exit_code == 1, action
        assert refused.stdout == ""
        assert refused.stderr.startswith(f"Error: Run {run_id} is canceled; ")


def test_runs_resume_then_complete(runner, greet, work):
    run_id = start_run(runner, "greet", "--input", '{"n": 2}')
    invoke(runner, "runs", "pause", run_id)
    invoke(runner, "runs", "resume", run_id)
    work()
    assert run_status(run_id) == "completed"
    refused = invoke(runner, "runs", "pause", run_id)
    assert refused.exit_code == 1
    assert "is completed" in refused.stderr


@pytest.mark.parametrize("value", ["{n: 1}", "{'n': 1}", "", '{"n": 1'])
def test_runs_start_with_input_that_is_not_json(runner, greet, value, api):
    result = invoke(runner, "runs", "start", "greet", "--input", value)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: --input is not JSON: ")
    assert "column" in result.stderr
    assert api.get("/api/runs").json["data"] == []


def test_runs_start_with_input_that_does_not_match_the_schema(runner, greet):
    result = invoke(runner, "runs", "start", "greet", "--input", '{"n": "five", "m": 1}')
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: The input does not match the workflow's input schema",
        "  /n: 'five' is not of type 'integer'",
    ]
    missing = invoke(runner, "runs", "start", "greet")
    assert missing.exit_code == 1
    assert "  /: 'n' is a required property" in missing.stderr.splitlines()
    not_object = invoke(runner, "runs", "start", "greet", "--input", "[1]")
    assert not_object.exit_code == 1
    assert "  /: the input must be a JSON object" in not_object.stderr.splitlines()


def test_runs_errors_for_unknown_names(runner, greet):
    unknown = invoke(runner, "runs", "start", "nope")
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: No workflow named 'nope'\n"
    version = invoke(runner, "runs", "start", "greet", "--input", '{"n": 1}', "--version", "v9")
    assert version.exit_code == 1
    assert version.stderr == "Error: Workflow 'greet' has no version 'v9'\n"
    for command in ("show", "pause", "resume", "cancel"):
        result = invoke(runner, "runs", command, "01hzzzzzzzzzzzzzzzzzzzzzzz")
        assert result.exit_code == 1, command
        assert result.stderr == "Error: No run with id '01hzzzzzzzzzzzzzzzzzzzzzzz'\n"


@pytest.mark.slow
def test_runs_start_wait_with_a_real_worker(runner, greet, processes, client, tmp_path):
    processes.worker()
    result = runner.invoke(
        args=["runs", "start", "greet", "--input", '{"n": 20}', "--wait", "--timeout", "60"]
    )
    assert result.exit_code == 0, result.output + processes.output()
    lines = result.stdout.splitlines()
    assert RUN_LINE.match(lines[0])
    body = result.stdout[result.stdout.index("{") :]
    data = json.loads(body)
    assert data["status"] == "completed"
    assert data["output"] == 41
    assert "  completed" in lines
    assert client.get("/healthz").json["workers"] >= 1

    failing = greet_definition()
    failing["steps"][1]["code"] = code("raise RuntimeError('nope')")
    invoke(runner, "workflows", "import", write(tmp_path, "failing.json", failing))
    failed = runner.invoke(
        args=["runs", "start", "greet", "--input", '{"n": 1}', "--wait", "--timeout", "60"]
    )
    assert failed.exit_code == 2, failed.output + processes.output()
    data = json.loads(failed.stdout[failed.stdout.index("{") :])
    assert data["status"] == "failed"
    assert "RuntimeError: nope" in data["error"]


def test_runs_start_wait_gives_up_without_a_worker(runner, greet):
    result = runner.invoke(
        args=["runs", "start", "greet", "--input", '{"n": 1}', "--wait", "--timeout", "0.5"]
    )
    assert result.exit_code == 3
    assert result.stderr == "Still pending after 0.5 s; is a worker running?\n"
