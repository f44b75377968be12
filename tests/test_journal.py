"""Journals and recovery through the API and the CLI: what a journal holds, in order; the
checks a journal passes before anything is created; pinning or publishing its version; and
the recovered run, which continues where the journal ends (docs/runs.md#journal)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from console.extensions import db
from console.models import Run, Workflow, WorkflowVersion

from .support import details_by_path, run_sql, step

STORY = {
    "name": "story",
    "steps": [
        step(
            "fetch",
            "ctx.logger.info('fetching', n=1)\n"
            "print('printed')\n"
            "return {'user': ctx.task('user', lambda: {'id': 7})}",
        ),
        step(
            "ask",
            "links = ctx.flow.suspend(timeout=3600)\n"
            "ctx.send_email(to='a@example.com', subject='Approve?', text=links.resume_url)\n"
            "ctx.logger.info('asked', link=links.resume_url)\n"
            "return 'asked'",
        ),
        step(
            "poll",
            "if ctx.run.runs < 2:\n    ctx.flow.rerun(0, context={'n': ctx.run.runs})\n"
            "ctx.wait('settle', 0)\n"
            "return ctx.run.context",
        ),
        step(
            "flaky",
            "if ctx.run.attempt == 1:\n    raise RuntimeError('first try')\nreturn 'ok'",
            retries=1,
            retry_delay=0,
        ),
    ],
}


def count(model: Any) -> int:
    db.session.commit()
    return int(db.session.scalar(db.select(db.func.count()).select_from(model)) or 0)


def run_story(api: Any, work: Any) -> str:
    assert api.put("/api/workflows/story", json=STORY).status_code in (200, 201)
    run_id = api.post("/api/workflows/story/runs", json={"input": {"x": 1}}).json["id"]
    work(until=lambda: db.session.get(Run, run_id).status == "suspended")
    assert api.post(f"/api/runs/{run_id}/pause").json["status"] == "paused"
    assert api.post(f"/api/runs/{run_id}/resume").json["status"] == "suspended"
    resume_url = api.get(f"/api/runs/{run_id}").json["links"]["resume_url"]
    token = resume_url.rsplit("/", 1)[1]
    assert api.client.post(f"/flow/resume/{token}", json={"ok": True}).status_code == 200
    work()
    assert api.get(f"/api/runs/{run_id}").json["status"] == "completed"
    return run_id


def test_the_journal_is_the_ordered_trace_of_the_run(api: Any, work: Any) -> None:
    run_id = run_story(api, work)
    answer = api.get(f"/api/runs/{run_id}/journal")
    assert answer.status_code == 200
    assert "attachment" in answer.headers["Content-Disposition"]
    journal = answer.json
    assert journal["format"] == "workflow-console/journal@1"
    assert journal["workflow"] == "story" and journal["input"] == {"x": 1}
    assert journal["version"]["label"] == "v1"
    assert [s["name"] for s in journal["version"]["definition"]["steps"]] == [
        "fetch",
        "ask",
        "poll",
        "flaky",
    ]
    assert "schedules" not in journal["version"]["definition"]
    assert journal["run"]["id"] == run_id and journal["run"]["status"] == "completed"
    entries = journal["entries"]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    types = [e["type"] for e in entries]
    for wanted in (
        "step_started",
        "task",
        "log",
        "email",
        "suspended",
        "paused",
        "unpaused",
        "resumed",
        "rerun_requested",
        "wait",
        "step_failed",
        "step_completed",
        "run_finished",
    ):
        assert wanted in types, (wanted, types)
    assert types[-1] == "run_finished" and entries[-1]["status"] == "completed"

    def of(kind: str, step: str | None = None) -> list[dict[str, Any]]:
        return [e for e in entries if e["type"] == kind and (step is None or e["step"] == step)]

    assert of("task")[0] == {**of("task")[0], "step": "fetch", "key": "user", "result": {"id": 7}}
    assert {e["message"] for e in of("log", "fetch")} >= {"fetching", "printed"}
    assert of("email")[0]["to"] == ["a@example.com"] and of("email")[0]["subject"] == "Approve?"
    assert of("resumed")[0]["resume_data"] == {"ok": True}
    assert of("resumed")[0]["timed_out"] is False
    assert of("rerun_requested")[0]["context"] == {"n": 1}
    assert of("rerun_requested")[0]["runs"] == 1
    # Execution 1 enters, waits, re-enters and asks for a rerun; execution 2 completes.
    assert [e["runs"] for e in of("step_started", "poll")] == [1, 1, 2]
    assert of("wait")[0]["key"] == "settle" and of("wait")[0]["runs"] == 1
    failed = of("step_failed", "flaky")
    assert len(failed) == 1 and failed[0]["attempt"] == 1 and "first try" in failed[0]["error"]
    assert len(of("step_started", "flaky")) == 2  # both attempts
    done = {e["step"]: e for e in of("step_completed")}
    assert done["ask"]["resume_data"] == {"ok": True}
    assert done["poll"]["output"] == {"n": 1} and done["flaky"]["output"] == "ok"
    # Each step's entries come after its start and before its completion.
    for name in ("fetch", "ask", "poll", "flaky"):
        seqs = [e["seq"] for e in entries if e.get("step") == name]
        assert seqs[0] == of("step_started", name)[0]["seq"]
        assert seqs[-1] == done[name]["seq"] or of("resumed", name)


def test_a_viewer_reads_the_journal_without_links(make_api: Any, api: Any, work: Any) -> None:
    run_id = run_story(api, work)
    text = json.dumps(make_api("viewer").get(f"/api/runs/{run_id}/journal").json)
    assert "/flow/resume/[hidden]" in text
    assert "/flow/resume/[hidden]" not in json.dumps(api.get(f"/api/runs/{run_id}/journal").json)


def test_a_completed_journal_recovers_with_nothing_executed(
    api: Any, make_api: Any, work: Any
) -> None:
    run_id = run_story(api, work)
    journal = api.get(f"/api/runs/{run_id}/journal").json
    outbox_before = count(Run)
    answer = make_api("operator").post("/api/journals", json=journal)
    assert answer.status_code == 202, answer.json
    assert answer.json["version"] == "v1"  # the identical version: no new one
    assert {s["action"] for s in answer.json["plan"]["steps"]} == {"reuse"}
    work()
    new = api.get(f"/api/runs/{answer.json['id']}").json
    assert new["status"] == "completed" and new["trigger"] == "recover"
    assert new["recovered_from"] == run_id
    assert all(s["reused"] and s["reused_from"] == run_id for s in new["steps"])
    assert new["output"] == "ok"
    assert count(Run) == outbox_before + 1
    assert count(WorkflowVersion) == 1
    again = api.get(f"/api/runs/{new['id']}/journal").json
    assert [e["step"] for e in again["entries"] if e["type"] == "step_completed"] == [
        "fetch",
        "ask",
        "poll",
        "flaky",
    ]
    assert [e for e in again["entries"] if e["type"] == "task"][0]["result"] == {"id": 7}


def test_recovering_a_new_definition_publishes_it_for_editors_only(
    api: Any, make_api: Any, work: Any
) -> None:
    run_id = run_story(api, work)
    journal = api.get(f"/api/runs/{run_id}/journal").json
    journal["workflow"] = "elsewhere"
    operator = make_api("operator").post("/api/journals", json=journal)
    assert operator.status_code == 403, operator.json
    assert db.session.scalar(db.select(Workflow).filter_by(name="elsewhere")) is None
    editor = make_api("editor").post("/api/journals", json=journal)
    assert editor.status_code == 202, editor.json
    version = db.session.scalar(
        db.select(WorkflowVersion).join(Workflow).where(Workflow.name == "elsewhere")
    )
    assert version.note == f"from the journal of run {run_id}" and version.label == "v1"


def test_execute_when_recovering_sees_the_recorded_output(api: Any, work: Any) -> None:
    body = {
        "name": "rebuild",
        "steps": [
            step("make", "return {'made': ctx.run.recovered}"),
            {
                **step("check", "return [ctx.run.recovered, ctx.run.previous_output]"),
                "execute_when_recovering": True,
            },
        ],
    }
    api.put("/api/workflows/rebuild", json=body)
    run_id = api.post("/api/workflows/rebuild/runs", json={}).json["id"]
    work()
    first = api.get(f"/api/runs/{run_id}").json
    assert first["steps"][1]["output"] == [False, None]
    journal = api.get(f"/api/runs/{run_id}/journal").json
    new_id = api.post("/api/journals", json=journal).json["id"]
    work()
    new = api.get(f"/api/runs/{new_id}").json
    assert new["steps"][0]["reused"] is True and new["steps"][0]["output"] == {"made": False}
    assert new["steps"][1]["reused"] is False
    assert new["steps"][1]["output"] == [True, [False, None]]


def test_bad_journals_are_refused_and_create_nothing(api: Any, work: Any, app: Any) -> None:
    run_id = run_story(api, work)
    good = api.get(f"/api/runs/{run_id}/journal").json
    runs, versions = count(Run), count(WorkflowVersion)

    def refused(doc: Any, status: int = 422) -> dict[str, str]:
        answer = api.post("/api/journals", json=doc)
        assert answer.status_code == status, answer.json
        return details_by_path(answer) if status == 422 else {}

    not_json = api.post("/api/journals", data="{nope", content_type="application/json")
    assert not_json.status_code == 400
    broken = json.loads(json.dumps(good))
    broken["format"] = "something"
    broken["entries"][0]["type"] = "teleported"
    broken["entries"][1]["step"] = "ghost"
    broken["version"]["definition"]["steps"][0]["code"] = "def run(ctx) return 1"
    problems = refused(broken)
    assert set(problems) >= {
        "/format",
        "/entries/0/type",
        "/entries/1/step",
        "/version/definition/steps/0/code",
    }, problems
    bad_seq = json.loads(json.dumps(good))
    bad_seq["entries"][2]["seq"] = 1
    assert "/entries/2/seq" in refused(bad_seq)
    assert "/" in refused([1, 2])
    no_input = {**good, "input": "x"}
    assert "/input" in refused(no_input)
    app.config["JOURNAL_MAX_BYTES"] = 1000
    assert refused(good, 413) == {}
    assert (count(Run), count(WorkflowVersion)) == (runs, versions)


def test_the_cli_exports_and_recovers(api: Any, work: Any, runner: Any, tmp_path: Any) -> None:
    run_id = run_story(api, work)
    path = tmp_path / "journal.json"
    result = runner.invoke(args=["runs", "journal", run_id, "-o", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(path.read_text())["run"]["id"] == run_id
    result = runner.invoke(args=["runs", "recover", str(path)])
    assert result.exit_code == 0, result.output
    assert "reuse    fetch" in result.output and "Started run" in result.output
    path.write_text('{"format": 1}')
    result = runner.invoke(args=["runs", "recover", str(path)])
    assert result.exit_code == 1 and "/format" in result.output


@pytest.mark.parametrize("kind", ["suspend"])
def test_an_unfinished_journal_recovers_while_the_original_goes_on(
    api: Any, work: Any, kind: str
) -> None:
    body = {
        "name": "halfway",
        "steps": [
            step("one", "return 1"),
            step("two", "ctx.flow.suspend()\nreturn 2"),
            step("three", "return 3"),
        ],
    }
    api.put("/api/workflows/halfway", json=body)
    run_id = api.post("/api/workflows/halfway/runs", json={}).json["id"]
    work(until=lambda: db.session.get(Run, run_id).status == "suspended")
    journal = api.get(f"/api/runs/{run_id}/journal").json
    assert journal["run"]["status"] == "suspended"
    answer = api.post("/api/journals", json=journal)
    assert [(s["name"], s["action"]) for s in answer.json["plan"]["steps"]] == [
        ("one", "reuse"),
        ("two", "execute"),
        ("three", "execute"),
    ]
    new_id = answer.json["id"]
    work(until=lambda: db.session.get(Run, new_id).status == "suspended")
    assert api.get(f"/api/runs/{run_id}").json["status"] == "suspended"  # untouched


def test_migration_0008_keeps_existing_runs_and_steps(app_env: dict[str, str]) -> None:
    from tests.test_recoveries import flask

    assert flask(app_env, "db", "upgrade", "0007").returncode == 0
    run_sql(
        app_env,
        "INSERT INTO workflows (id, name, title, description, created_at, updated_at, "
        "draft_revision, webhook_nonce) VALUES (1, 'old', '', '', '2026-01-01', '2026-01-01', "
        "0, 'n')",
        "INSERT INTO workflow_versions (id, workflow_id, number, label, definition, "
        "definition_hash, note, published_at) VALUES (1, 1, 1, 'v1', '{}', 'h', '', "
        "'2026-01-01')",
        "INSERT INTO runs (id, workflow_id, version_id, status, trigger, input, compute_ms, "
        "current_step, step_count, created_at, updated_at, replays, recoveries) VALUES ('r1', "
        "1, 1, 'completed', 'manual', '{}', 0, 1, 1, '2026-01-01', '2026-01-01', 0, 0)",
        "INSERT INTO step_runs (run_id, name, position, status, attempts, runs, timed_out) "
        "VALUES ('r1', 'one', 0, 'completed', 1, 1, false)",
    )
    upgraded = flask(app_env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert run_sql(app_env, "SELECT rerun_of FROM runs") == "[None]"
    assert run_sql(app_env, "SELECT recovered_from FROM runs") == "[None]"
    assert run_sql(app_env, "SELECT reused FROM step_runs") in ("[0]", "[False]")
    assert run_sql(app_env, "SELECT recovered FROM step_runs") in ("[0]", "[False]")
    assert run_sql(app_env, "SELECT reads FROM step_runs") == "[None]"
    assert run_sql(app_env, "SELECT count(*) FROM run_events") == "[0]"
    downgraded = flask(app_env, "db", "downgrade", "0007")
    assert downgraded.returncode == 0, downgraded.stderr
