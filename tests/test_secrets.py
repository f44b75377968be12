"""Secrets: API, CLI and page round trips, roles, names and sizes; encryption at rest and
rotation; ``ctx.secrets`` in steps and ``{{ secrets.NAME }}`` in built-in kinds; masking of
every place a run's data is kept or shown (steps execute in the real step sandbox)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from console import secrets
from console.extensions import db
from console.models import OutboxMessage, Run, Secret, StepRun, TaskResult
from tests.pgserver import pg_bin
from tests.support import csrf_token, run_sql, step
from tests.test_editor import work_tests
from tests.test_stepkinds import http_server  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-3f9a7c21-very-secret"
PASSWORD = "pa'ss\"word\n2"


def flask(env: dict[str, str], *args: str, stdin: str | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "console", *args],
        env=dict(os.environ, **env),
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def put(api: Any, name: str, value: Any) -> Any:
    return api.put(f"/api/secrets/{name}", json={"value": value})


def run_of(run_id: str) -> Run:
    db.session.commit()
    db.session.expire_all()
    run = db.session.get(Run, run_id)
    assert run is not None
    return run


def start(api: Any, workflow: str, **input: Any) -> str:
    answer = api.post(f"/api/workflows/{workflow}/runs", json={"input": input})
    assert answer.status_code == 202, answer.json
    return str(answer.json["id"])


# ------------------------------------------------------------------------ API and roles


def test_api_round_trip_never_answers_a_value(app, api):
    created = put(api, "API_TOKEN", TOKEN)
    assert created.status_code == 201, created.json
    assert set(created.json) == {"name", "created_at", "updated_at", "updated_by", "used_by"}
    assert created.json["updated_by"].startswith("admin-") and created.json["used_by"] == []
    replaced = put(api, "API_TOKEN", TOKEN + "-2")
    assert replaced.status_code == 200
    listed = api.get("/api/secrets")
    assert listed.status_code == 200 and [s["name"] for s in listed.json] == ["API_TOKEN"]
    for answer in (created, replaced, listed):
        assert TOKEN not in answer.get_data(as_text=True)
    assert secrets.step_secrets() == {"API_TOKEN": TOKEN + "-2"}
    assert api.delete("/api/secrets/API_TOKEN").status_code == 204
    assert api.delete("/api/secrets/API_TOKEN").status_code == 404
    assert api.get("/api/secrets").json == []


@pytest.mark.parametrize("name", ["api_token", "1TOKEN", "_X", "A-B", "A" * 64, "TOKEN%20X", "Ä"])
def test_bad_names_are_refused(app, api, name):
    answer = put(api, name, "value")
    assert answer.status_code == 422 and answer.json["details"][0]["path"] == "/name"


def test_sizes_and_bodies(app, api):
    assert put(api, "BIG", "é" * (32 * 1024)).status_code == 201  # 64 KiB of UTF-8 exactly
    too_big = put(api, "BIG", "é" * (32 * 1024) + "x")
    assert too_big.status_code == 422 and "64 KiB" in too_big.json["details"][0]["message"]
    assert put(api, "NUMBER", 12345).status_code == 422
    assert api.put("/api/secrets/X", json={"value": "v", "extra": 1}).status_code == 422
    assert api.put("/api/secrets/X", data="v").status_code == 400
    assert put(api, "A" * 63, "ok").status_code == 201


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_editors_and_admins_reach_secrets(app, make_api, role):
    api = make_api(role)
    assert api.get("/api/secrets").status_code == 403
    assert put(api, "X_TOKEN", "value").status_code == 403
    assert api.delete("/api/secrets/X_TOKEN").status_code == 403
    editor = make_api("editor")
    assert put(editor, "X_TOKEN", "value").status_code == 201
    assert editor.get("/api/secrets").status_code == 200
    assert api.delete("/api/secrets/X_TOKEN").status_code == 403
    assert editor.delete("/api/secrets/X_TOKEN").status_code == 204


def test_used_by_and_delete_refused_while_used(app, api, define):
    put(api, "API_TOKEN", TOKEN)
    put(api, "OTHER", "other-value")
    define("coded", [step("one", "return ctx.secrets['API_TOKEN'][:0]")])
    define("gets", [step("one", 'return ctx.secrets.get("OTHER", "")[:0]')])
    define(
        "kind",
        [
            {
                "name": "call",
                "kind": "http",
                "config": {
                    "url": "https://example.com/",
                    "headers": "Authorization: Bearer {{ secrets.API_TOKEN }}",
                },
            }
        ],
    )
    by_name = {s["name"]: s["used_by"] for s in api.get("/api/secrets").json}
    assert by_name == {"API_TOKEN": ["coded", "kind"], "OTHER": ["gets"]}
    refused = api.delete("/api/secrets/API_TOKEN")
    assert refused.status_code == 409
    assert "coded" in refused.json["error"] and "kind" in refused.json["error"]
    # Only the latest version counts: a new version that stops using it frees it.
    define("gets", [step("one", "return 1")])
    assert api.delete("/api/secrets/OTHER").status_code == 204
    assert api.delete("/api/secrets/API_TOKEN?force=1").status_code == 204


# ----------------------------------------------------------------------- CLI, at rest


def test_cli_round_trip(app, runner):
    done = runner.invoke(args=["secrets", "set", "API_TOKEN"], input=TOKEN + "\n")
    assert done.exit_code == 0 and "Created secret API_TOKEN" in done.output
    assert secrets.step_secrets() == {"API_TOKEN": TOKEN}  # the newline is not the value's
    listed = runner.invoke(args=["secrets", "list"])
    assert "API_TOKEN" in listed.output and TOKEN not in listed.output and "cli" in listed.output
    bad = runner.invoke(args=["secrets", "set", "bad-name"], input="x")
    assert bad.exit_code == 1 and "name" in bad.output
    assert runner.invoke(args=["secrets", "delete", "API_TOKEN"]).exit_code == 0
    assert runner.invoke(args=["secrets", "delete", "API_TOKEN"]).exit_code == 1


def test_the_database_never_holds_a_value(app, app_env, api, define, work, backend, request):
    put(api, "API_TOKEN", TOKEN)
    define(
        "leaky",
        [
            step(
                "one",
                "\n".join(
                    [
                        "t = ctx.secrets['API_TOKEN']",
                        "ctx.logger.info('token ' + t, t=t)",
                        "r = ctx.task('t', lambda: {'auth': ctx.secrets['API_TOKEN']})",
                        "return {'out': r['auth']}",
                    ]
                ),
            )
        ],
    )
    run_id = start(api, "leaky")
    work()
    assert run_of(run_id).status == "completed"
    db.session.remove()
    db.engine.dispose()
    if backend == "sqlite":
        folder = Path(app_env["CONSOLE_INSTANCE_PATH"])
        dumped = b"".join(p.read_bytes() for p in folder.glob("console.db*"))
    else:
        url = db.engine.url
        dumped = subprocess.run(
            [
                pg_bin("pg_dump"),
                "-h",
                url.query["host"],
                "-p",
                str(url.query["port"]),
                "-U",
                "postgres",
                url.database,
            ],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        assert b"task_results" in dumped
    assert TOKEN.encode() not in dumped
    assert b"[secret API_TOKEN]" in dumped  # the masked log line and output are there


def test_rotation_to_a_new_key(app_env):
    env = dict(app_env, SECRETS_KEY="key-A-" + "a" * 32)
    assert flask(env, "db", "upgrade").returncode == 0
    assert flask(env, "secrets", "set", "API_TOKEN", stdin=TOKEN).returncode == 0
    read = (
        "from console import create_app, secrets\n"
        "with create_app().app_context(): print(secrets.step_secrets())"
    )

    def values(**extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", read],
            env=dict(os.environ, **app_env, **extra),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    key_a, key_b = env["SECRETS_KEY"], "key-B-" + "b" * 32
    assert values(SECRETS_KEY=key_a) == f"{{'API_TOKEN': '{TOKEN}'}}"
    assert values(SECRETS_KEY=key_b) == "{}"  # B alone cannot read it
    rotated = flask(
        dict(app_env, SECRETS_KEY=key_b, SECRETS_KEY_FALLBACKS=key_a), "secrets", "rotate"
    )
    assert rotated.returncode == 0 and "Re-encrypted 1 secrets" in rotated.stdout, rotated.stderr
    assert values(SECRETS_KEY=key_b) == f"{{'API_TOKEN': '{TOKEN}'}}"
    assert values(SECRETS_KEY=key_a) == "{}"  # re-encrypted: A no longer reads it
    # Without SECRETS_KEY the key comes from SECRET_KEY (through HKDF), which is not B.
    assert values() == "{}"


def test_migration_0009_from_0008(app_env):
    assert flask(app_env, "db", "upgrade", "0008").returncode == 0
    upgraded = flask(app_env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert run_sql(app_env, "SELECT count(*) FROM secrets") == "[0]"
    assert flask(app_env, "secrets", "set", "A_B", stdin="value-1").returncode == 0
    downgraded = flask(app_env, "db", "downgrade", "0008")
    assert downgraded.returncode == 0, downgraded.stderr


# ------------------------------------------------------------------------------ in steps

SEMANTICS = """
s = ctx.secrets
out = {'item': s['API_TOKEN'] == EXPECTED, 'get': s.get('NOPE', 'dflt'), 'in': 'API_TOKEN' in s,
       'names': list(s), 'len': len(s), 'repr': repr(s)}
try:
    s['API_TOKEN'] = 'x'
except TypeError:
    out['read_only'] = True
try:
    s['MISSING']
except KeyError as exc:
    out['missing'] = str(exc)
import os
out['env'] = any(EXPECTED in v for v in os.environ.values())
return out
""".replace("EXPECTED", repr(TOKEN))


def test_ctx_secrets_in_a_step(app, api, define, work):
    put(api, "API_TOKEN", TOKEN)
    put(api, "B_KEY", "bbbb-value")
    define("semantics", [step("one", SEMANTICS)])
    run_id = start(api, "semantics")
    work()
    output = run_of(run_id).output
    assert output["item"] and output["get"] == "dflt" and output["in"] and output["len"] == 2
    assert output["names"] == ["API_TOKEN", "B_KEY"] and output["read_only"]
    assert "'MISSING'" in output["missing"] and "API_TOKEN, B_KEY" in output["missing"]
    assert output["repr"] == "<secrets: API_TOKEN, B_KEY>"
    assert output["env"] is False  # handed over with the step, not through the environment


MASKED_STEP = """
t = ctx.secrets['API_TOKEN']
ctx.logger.info('calling with ' + t, header={'Authorization': 'Bearer ' + t, t: 1})
print('printed', t)
print('quoted', repr(ctx.secrets['PASSWORD']))
r = ctx.task('login', lambda: {'token': t, 'n': 1})
assert r['token'] == t  # the step sees the real value, also from its record
if ctx.input.get('fail'):
    raise ValueError('refused ' + t)
links = ctx.flow.suspend(timeout=3600)
ctx.send_email(to='a@example.com', subject='token ' + t, text='body ' + t)
return {'echo': t, 'resume': links.resume_url}
"""
USE_STEP = "return {'saw': ctx.steps.one.resume_data, 'before': ctx.steps.one.output}"


def test_masking_everywhere_a_run_is_kept_or_shown(app, api, define, work, client, auth):
    put(api, "API_TOKEN", TOKEN)
    put(api, "PASSWORD", PASSWORD)
    define("masked", [step("one", MASKED_STEP), step("two", USE_STEP)])
    run_id = start(api, "masked")
    work(until=lambda: run_of(run_id).status == "suspended")
    resume = urlsplit(api.get(f"/api/runs/{run_id}").json["links"]["resume_url"]).path
    answer = client.post(resume, json={"echoed": TOKEN, "pw": PASSWORD})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    work()
    run = run_of(run_id)
    assert run.status == "completed"
    assert run.output == {
        "saw": {"echoed": "[secret API_TOKEN]", "pw": "[secret PASSWORD]"},
        "before": {"echo": "[secret API_TOKEN]", "resume": run.output["before"]["resume"]},
    }
    steps = {s.name: s for s in db.session.scalars(select(StepRun).filter_by(run_id=run_id))}
    assert steps["one"].resume_data == {"echoed": "[secret API_TOKEN]", "pw": "[secret PASSWORD]"}
    logs = api.get(f"/api/runs/{run_id}/logs").json["data"]
    text = [(line["message"], line["fields"]) for line in logs]
    assert (
        "calling with [secret API_TOKEN]",
        {"header": {"Authorization": "Bearer [secret API_TOKEN]", "[secret API_TOKEN]": 1}},
    ) in text
    assert ("printed [secret API_TOKEN]", None) in text
    assert any(m.startswith("quoted '[secret PASSWORD]'") for m, _ in text), text
    mail = db.session.scalars(select(OutboxMessage).filter_by(run_id=run_id)).one()
    assert mail.subject == "token [secret API_TOKEN]" and mail.text == "body [secret API_TOKEN]"
    # The task result is kept as returned, sealed; shown masked.
    task = db.session.scalars(select(TaskResult).filter_by(run_id=run_id)).one()
    assert TOKEN not in str(task.result)
    assert secrets.shown_task_result(task.result) == {"token": "[secret API_TOKEN]", "n": 1}
    assert secrets.opened_task_result(task.result) == {"token": TOKEN, "n": 1}
    detail = api.get(f"/api/runs/{run_id}").get_data(as_text=True)
    auth.login("operator")
    pages = [client.get(f"/runs/{run_id}").get_data(as_text=True)]
    pages.append(client.get("/outbox").get_data(as_text=True))
    journal = api.get(f"/api/runs/{run_id}/journal").get_data(as_text=True)
    for shown in (detail, journal, *pages):
        assert TOKEN not in shown and "pa&#39;ss" not in shown and "[secret API_TOKEN]" in shown
    assert PASSWORD not in journal
    # A re-run reuses the sealed task result as it was stored: still no value in clear.
    rerun = api.post(f"/api/runs/{run_id}/rerun", json={"from_step": "two"})
    assert rerun.status_code == 202, rerun.json
    copied = db.session.scalars(select(TaskResult).filter_by(run_id=rerun.json["id"])).one()
    assert TOKEN not in str(copied.result)
    assert secrets.opened_task_result(copied.result) == {"token": TOKEN, "n": 1}


def test_tracebacks_and_errors_are_masked(app, api, define, work):
    put(api, "API_TOKEN", TOKEN)
    put(api, "PASSWORD", PASSWORD)
    define("fails", [step("one", MASKED_STEP)])
    run_id = start(api, "fails", fail=True)
    work()
    run = run_of(run_id)
    assert run.status == "failed" and "ValueError: refused [secret API_TOKEN]" in run.error
    assert TOKEN not in run.error
    one = db.session.scalars(select(StepRun).filter_by(run_id=run_id)).one()
    assert TOKEN not in one.error and "[secret API_TOKEN]" in one.error


def test_a_changed_value_applies_from_the_next_execution(app, api, define, work, client):
    put(api, "API_TOKEN", "first-value")
    define(
        "changes",
        [
            step("one", "ctx.flow.suspend(timeout=3600)\nreturn len(ctx.secrets['API_TOKEN'])"),
            step("two", "return len(ctx.secrets['API_TOKEN'])"),
        ],
    )
    run_id = start(api, "changes")
    work(until=lambda: run_of(run_id).status == "suspended")
    put(api, "API_TOKEN", "the-second-value")
    resume = urlsplit(api.get(f"/api/runs/{run_id}").json["links"]["resume_url"]).path
    assert client.post(resume, json={}).status_code == 200
    work()
    outputs = {
        s.name: s.output for s in db.session.scalars(select(StepRun).filter_by(run_id=run_id))
    }
    assert outputs == {"one": len("first-value"), "two": len("the-second-value")}


def test_http_kind_sends_the_real_value(app, api, define, work, http_server):  # noqa: F811
    put(api, "API_TOKEN", TOKEN)
    define(
        "calls",
        [
            {
                "name": "call",
                "kind": "http",
                "config": {
                    "method": "POST",
                    "url": http_server.base + "/hook?key={{ secrets.API_TOKEN }}",
                    "headers": "Authorization: Bearer {{ secrets.API_TOKEN }}",
                    "body": '{"token": "{{ secrets.API_TOKEN }}"}',
                },
            }
        ],
    )
    http_server.answers.append((200, {"echo": TOKEN}))
    run_id = start(api, "calls")
    work()
    run = run_of(run_id)
    assert run.status == "completed", run.error
    sent = http_server.requests[0]
    assert sent["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert sent["path"] == f"/hook?key={TOKEN}" and TOKEN in sent["body"]
    assert TOKEN not in str(run.output) and "[secret API_TOKEN]" in str(run.output)


def test_unknown_secret_imports_fails_with_keyerror_and_the_editor_warns(
    app, api, define, work, auth, client
):
    put(api, "KNOWN", "known-value")
    body = {
        "name": "needs",
        "steps": [
            step("one", "return ctx.secrets['LATER']"),
            {
                "name": "two",
                "kind": "http",
                "config": {
                    "url": "https://example.com/",
                    "headers": "X-Key: {{ secrets.MISSING_TOO }}",
                },
            },
        ],
    }
    assert api.put("/api/workflows/needs", json=body).status_code == 201
    run_id = start(api, "needs")
    work()
    run = run_of(run_id)
    assert run.status == "failed" and "KeyError" in run.error and "'LATER'" in run.error
    assert "defined: KNOWN" in run.error
    auth.login("editor")
    page = client.get("/workflows/needs").get_data(as_text=True)
    assert "No secret named LATER (defined: KNOWN)" in page
    assert "No secret named MISSING_TOO" in page
    put(api, "LATER", "now-it-exists")
    page = client.get("/workflows/needs").get_data(as_text=True)
    assert "No secret named LATER" not in page
    # The definition never carries a value.
    exported = api.get("/api/workflows/needs").get_data(as_text=True)
    assert "now-it-exists" not in exported and "known-value" not in exported


def test_step_test_panel_sees_secrets_and_masks_them(app, api, define, auth, client):
    from console import steptests

    put(api, "API_TOKEN", TOKEN)
    workflow = define(
        "tested", [step("one", "print(ctx.secrets['API_TOKEN'])\nreturn ctx.secrets['API_TOKEN']")]
    )
    test = steptests.start_step_test(workflow, workflow.latest_version.definition, "one", {}, None)
    work_tests(app)
    auth.login("editor")
    html = client.get(f"/workflows/tested/tests/{test.id}").get_data(as_text=True)
    assert "completed" in html and TOKEN not in html and "[secret API_TOKEN]" in html


# ------------------------------------------------------------------------------ the page


def test_page_round_trip_and_roles(app, auth, client, define, api):
    auth.login("viewer")
    assert client.get("/secrets").status_code == 403
    auth.logout()
    token = auth.login("editor")
    page = client.get("/secrets").get_data(as_text=True)
    assert "No secrets yet" in page and 'type="password"' in page
    added = client.post("/secrets", data={"csrf_token": token, "name": "API_TOKEN", "value": TOKEN})
    assert added.status_code == 302
    define("uses", [step("one", "return ctx.secrets['API_TOKEN'][:0]")])
    page = client.get("/secrets").get_data(as_text=True)
    assert (
        "API_TOKEN" in page
        and "uses" in page
        and TOKEN not in page
        and "editor@example.com" in page
    )
    bad = client.post("/secrets", data={"csrf_token": token, "name": "bad", "value": "x"})
    assert bad.status_code == 422 and "capital letter" in bad.get_data(as_text=True)
    no_csrf = client.post("/secrets", data={"name": "OTHER", "value": "x"})
    assert no_csrf.status_code == 400
    htmx = client.post(
        "/secrets",
        data={"csrf_token": token, "name": "API_TOKEN", "value": "new-value"},
        headers={"HX-Request": "true"},
    )
    html = htmx.get_data(as_text=True)
    assert htmx.status_code == 200 and "Secret API_TOKEN replaced." in html and "<html" not in html
    assert secrets.step_secrets() == {"API_TOKEN": "new-value"}
    confirm = client.get("/secrets/API_TOKEN/delete").get_data(as_text=True)
    assert "uses" in confirm and "KeyError" in confirm
    deleted = client.post("/secrets/API_TOKEN/delete", data={"csrf_token": csrf_token(confirm)})
    assert deleted.status_code == 302 and db.session.scalar(select(Secret.id)) is None
