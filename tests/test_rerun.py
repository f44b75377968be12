"""Re-runs (plain, from a step, smart, on another version, with a new input, dry runs) and
their refusals, through the API and the CLI, with the steps' executions counted by a local
HTTP server they call: a reused step sends nothing."""

from __future__ import annotations

import http.server
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from console.extensions import db
from console.models import Run, RunEvent, StepRun

from .support import details_by_path, step


class Hits(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HitHandler)
        self.counts: Counter[str] = Counter()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HitHandler(http.server.BaseHTTPRequestHandler):
    server: Hits

    def do_GET(self) -> None:  # noqa: N802
        self.server.counts[self.path.strip("/")] += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hits() -> Iterator[Hits]:
    server = Hits()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def counted(name: str, hits: Hits, body: str) -> dict[str, Any]:
    """A step that tells the counter it executed, then runs ``body``."""
    return step(
        name,
        f"import urllib.request\nurllib.request.urlopen({hits.url + '/' + name!r}).read()\n{body}",
    )


def pipeline(hits: Hits, transform: str = "return {'rows': ctx.steps.fetch.output['rows'] * 2}"):
    return {
        "name": "etl",
        "input_schema": {
            "type": "object",
            "properties": {"source": {"type": "string"}, "email": {"type": "string"}},
        },
        "steps": [
            counted("fetch", hits, "return {'rows': len(ctx.input['source'])}"),
            counted("transform", hits, transform),
            counted("load", hits, "return {'loaded': ctx.steps['transform'].output['rows']}"),
            counted("notify", hits, "return {'to': ctx.input.get('email')}"),
        ],
    }


def start(api: Any, work: Any, body: dict[str, Any], run_input: dict[str, Any]) -> str:
    assert api.put(f"/api/workflows/{body['name']}", json=body).status_code in (200, 201)
    answer = api.post(f"/api/workflows/{body['name']}/runs", json={"input": run_input})
    assert answer.status_code == 202, answer.json
    work()
    return answer.json["id"]


def plan_of(answer: Any) -> dict[str, tuple[str, str]]:
    return {s["name"]: (s["action"], s["reason"]) for s in answer.json["plan"]["steps"]}


def test_a_smart_rerun_executes_exactly_what_changed_and_what_reads_it(
    api: Any, work: Any, hits: Hits
) -> None:
    first = start(api, work, pipeline(hits), {"source": "abc", "email": "a@example.com"})
    assert api.get(f"/api/runs/{first}").json["status"] == "completed"
    assert hits.counts == Counter(fetch=1, transform=1, load=1, notify=1)
    edited = pipeline(hits, transform="return {'rows': ctx.steps.fetch.output['rows'] * 10}")
    assert api.put("/api/workflows/etl", json=edited).json["version"] == "v2"

    body = {"smart": True, "version": "latest"}
    dry = api.post(f"/api/runs/{first}/rerun", json={**body, "dry_run": True})
    assert dry.status_code == 200, dry.json
    expected = {
        "fetch": ("reuse", "unchanged"),
        "transform": ("execute", "code changed"),
        "load": ("execute", "reads steps.transform, which executes"),
        "notify": ("reuse", "unchanged"),
    }
    assert plan_of(dry) == expected
    assert dry.json["plan"]["version"] == "v2"
    assert db.session.scalar(db.select(db.func.count()).select_from(Run)) == 1  # nothing started

    answer = api.post(f"/api/runs/{first}/rerun", json=body)
    assert answer.status_code == 202, answer.json
    assert plan_of(answer) == expected
    work()
    assert hits.counts == Counter(fetch=1, transform=2, load=2, notify=1)
    new = api.get(f"/api/runs/{answer.json['id']}").json
    assert new["status"] == "completed" and new["version"] == "v2"
    assert new["trigger"] == f"rerun:{first}" and new["rerun_of"] == first
    assert {s["name"]: s["reused"] for s in new["steps"]} == {
        "fetch": True,
        "transform": False,
        "load": False,
        "notify": True,
    }
    assert {s["name"]: s["reused_from"] for s in new["steps"] if s["reused"]} == {
        "fetch": first,
        "notify": first,
    }
    assert new["steps"][2]["output"] == {"loaded": 30}
    assert new["output"] == {"to": "a@example.com"}


def test_a_changed_input_field_executes_only_the_steps_that_read_it(
    api: Any, work: Any, hits: Hits
) -> None:
    first = start(api, work, pipeline(hits), {"source": "abc", "email": "a@example.com"})
    body = {"smart": True, "input": {"source": "abc", "email": "b@example.com"}}
    dry = api.post(f"/api/runs/{first}/rerun", json={**body, "dry_run": True})
    assert plan_of(dry) == {
        "fetch": ("reuse", "unchanged"),
        "transform": ("reuse", "unchanged"),
        "load": ("reuse", "unchanged"),
        "notify": ("execute", "reads input.email, which changed"),
    }
    answer = api.post(f"/api/runs/{first}/rerun", json=body)
    work()
    assert hits.counts == Counter(fetch=1, transform=1, load=1, notify=2)
    assert api.get(f"/api/runs/{answer.json['id']}").json["output"] == {"to": "b@example.com"}

    # A step that reads the input whole re-executes on any change of it.
    whole = {
        "name": "whole",
        "steps": [counted("dump", hits, "return dict(ctx.input)")],
    }
    run = start(api, work, whole, {"a": 1})
    dry = api.post(
        f"/api/runs/{run}/rerun", json={"smart": True, "input": {"a": 2}, "dry_run": True}
    )
    assert plan_of(dry) == {"dump": ("execute", "reads the whole input, which changed")}


def test_plain_and_from_step_reruns_and_the_original_version(
    api: Any, work: Any, hits: Hits
) -> None:
    first = start(api, work, pipeline(hits), {"source": "abcd"})
    plain = api.post(f"/api/runs/{first}/rerun", json={})
    assert plan_of(plain) == {n: ("execute", "plain re-run") for n in expected_names()}
    work()
    assert hits.counts == Counter(fetch=2, transform=2, load=2, notify=2)

    edited = pipeline(hits, transform="return {'rows': 0}")
    api.put("/api/workflows/etl", json=edited)
    original = api.post(f"/api/runs/{first}/rerun", json={"from_step": "load"})
    assert original.status_code == 202, original.json
    assert plan_of(original) == {
        "fetch": ("reuse", "before from_step"),
        "transform": ("reuse", "before from_step"),
        "load": ("execute", "from_step"),
        "notify": ("execute", "from_step"),
    }
    assert original.json["plan"]["version"] == "v1"
    work()
    assert hits.counts == Counter(fetch=2, transform=2, load=3, notify=3)
    done = api.get(f"/api/runs/{original.json['id']}").json
    assert done["version"] == "v1" and done["steps"][2]["output"] == {"loaded": 8}

    latest = api.post(
        f"/api/runs/{first}/rerun", json={"from_step": "transform", "version": "latest"}
    )
    work()
    done = api.get(f"/api/runs/{latest.json['id']}").json
    assert done["version"] == "v2" and done["steps"][2]["output"] == {"loaded": 0}
    labelled = api.post(f"/api/runs/{first}/rerun", json={"version": "v1", "dry_run": True})
    assert labelled.json["plan"]["version"] == "v1"


def expected_names() -> list[str]:
    return ["fetch", "transform", "load", "notify"]


def test_refusals_create_nothing(api: Any, work: Any, hits: Hits, define: Any) -> None:
    first = start(api, work, pipeline(hits), {"source": "abc"})
    before = db.session.scalar(db.select(db.func.count()).select_from(Run))

    def refused(body: Any, status: int) -> dict[str, str]:
        answer = api.post(f"/api/runs/{first}/rerun", json=body)
        assert answer.status_code == status, answer.json
        return details_by_path(answer)

    assert "/from_step" in refused({"from_step": "nope"}, 422)
    assert "/version" in refused({"version": "v9"}, 422)
    assert "/input/source" in refused({"input": {"source": 5}}, 422) or refused(
        {"input": {"source": 5}}, 422
    )
    assert "/smart" in refused({"smart": "yes"}, 422)
    assert "/colour" in refused({"colour": 1}, 422)

    # A step after one that did not complete cannot be re-run from.
    flaky = {
        "name": "flaky",
        "steps": [step("one", "raise RuntimeError('no')"), step("two", "return 2")],
    }
    api.put("/api/workflows/flaky", json=flaky)
    failed = api.post("/api/workflows/flaky/runs", json={}).json["id"]
    work()
    answer = api.post(f"/api/runs/{failed}/rerun", json={"from_step": "two"})
    assert answer.status_code == 422
    assert "'one'" in details_by_path(answer)["/from_step"]
    smart = api.post(f"/api/runs/{failed}/rerun", json={"smart": True, "dry_run": True})
    assert plan_of(smart)["one"] == ("execute", "did not complete in the original run")

    # A run that has not finished is not re-run.
    slow = {"name": "slow", "steps": [step("wait", "ctx.flow.suspend()\nreturn 1")]}
    api.put("/api/workflows/slow", json=slow)
    waiting = api.post("/api/workflows/slow/runs", json={}).json["id"]
    work(until=lambda: db.session.get(Run, waiting).status == "suspended")
    assert api.post(f"/api/runs/{waiting}/rerun", json={}).status_code == 409
    total = db.session.scalar(db.select(db.func.count()).select_from(Run))
    assert total == before + 2  # only the two runs this test started itself


def test_a_viewer_cannot_rerun_and_the_cli_prints_the_plan(
    api: Any, make_api: Any, work: Any, hits: Hits, runner: Any
) -> None:
    first = start(api, work, pipeline(hits), {"source": "abc"})
    assert make_api("viewer").post(f"/api/runs/{first}/rerun", json={}).status_code == 403
    result = runner.invoke(args=["runs", "rerun", first, "--smart", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "reuse    fetch" in result.output and "unchanged" in result.output
    assert db.session.scalar(db.select(db.func.count()).select_from(Run)) == 1
    result = runner.invoke(args=["runs", "rerun", first, "--from-step", "load"])
    assert result.exit_code == 0, result.output
    assert "execute  load" in result.output and "Started run" in result.output
    result = runner.invoke(args=["runs", "rerun", first, "--from-step", "nope"])
    assert result.exit_code == 1 and "no step named 'nope'" in result.output


def test_execute_when_recovering_steps_execute_with_the_previous_output(
    api: Any, work: Any, hits: Hits
) -> None:
    body = {
        "name": "check",
        "steps": [
            step("make", "return {'n': 1}"),
            {
                **step(
                    "verify",
                    "return {'recovered': ctx.run.recovered, 'previous': ctx.run.previous_output}",
                ),
                "execute_when_recovering": True,
            },
            counted("last", hits, "return ctx.steps.verify.output"),
        ],
    }
    first = start(api, work, body, {})
    run = api.get(f"/api/runs/{first}").json
    assert run["steps"][1]["output"] == {"recovered": False, "previous": None}
    answer = api.post(f"/api/runs/{first}/rerun", json={"from_step": "last"})
    assert answer.json["plan"]["steps"][1] == {
        "name": "verify",
        "action": "reuse",
        "reason": "before from_step",
        "execute_when_recovering": True,
    }
    work()
    new = api.get(f"/api/runs/{answer.json['id']}").json
    assert new["steps"][0]["reused"] is True
    assert new["steps"][1]["output"] == {
        "recovered": True,
        "previous": {"recovered": False, "previous": None},
    }
    assert hits.counts["last"] == 2


def test_reads_and_content_hashes_are_recorded_per_execution(api: Any, work: Any, hits: Hits):
    first = start(api, work, pipeline(hits), {"source": "abc", "email": "e"})
    rows = {r.name: r for r in db.session.scalars(db.select(StepRun).filter_by(run_id=first))}
    assert rows["fetch"].reads == {"input": ["source"], "steps": []}
    assert rows["transform"].reads == {"input": [], "steps": ["fetch"]}
    assert rows["load"].reads == {"input": [], "steps": ["transform"]}
    assert rows["notify"].reads == {"input": ["email"], "steps": []}
    assert len({r.content_hash for r in rows.values()}) == 4
    assert all(len(r.content_hash) == 64 for r in rows.values())
    assert db.session.scalar(db.select(db.func.count()).select_from(RunEvent)) == 0
