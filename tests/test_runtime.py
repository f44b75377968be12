"""The step runtime and the run state machine, executed in-process (SimpleWorker)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from console import runs as domain
from console.extensions import db
from console.models import LogLine, Run, StepRun, TaskResult
from console.timeutil import utcnow
from tests.conftest import run_status, steps_completed
from tests.support import step
from workers.jobs import Runner


def start(workflow, input=None, **kw):
    run, _ = domain.start_run(workflow, input or {}, **kw)
    return run.id


def detail(api, run_id):
    response = api.get(f"/api/runs/{run_id}")
    assert response.status_code == 200
    return response.json


def test_ctx_exposes_input_steps_run_and_names(app, define, work, api):
    wf = define(
        "ctx_tour",
        [
            ("first", "def run(ctx):\n    return {'n': ctx.input['n']}"),
            (
                "second",
                "def run(ctx):\n"
                "    return {'item': ctx.steps['first'].output['n'],\n"
                "            'attr': ctx.steps.first.output['n'],\n"
                "            'run_id': ctx.run.id, 'runs': ctx.run.runs,\n"
                "            'attempt': ctx.run.attempt, 'key': ctx.idempotency_key,\n"
                "            'workflow': ctx.workflow, 'version': ctx.version,\n"
                "            'recovered': ctx.run.recovered, 'context': ctx.run.context,\n"
                "            'secrets': dict(ctx.secrets)}",
            ),
        ],
    )
    run_id = start(wf, {"n": 7})
    work()
    out = detail(api, run_id)["output"]
    assert out == {
        "item": 7,
        "attr": 7,
        "run_id": run_id,
        "runs": 1,
        "attempt": 1,
        "key": f"{run_id}:second:1",
        "workflow": "ctx_tour",
        "version": "v1",
        "recovered": False,
        "context": None,
        "secrets": {},
    }


def test_unknown_earlier_step_is_a_readable_error(app, define, work, api):
    wf = define("bad_ref", [("only", "def run(ctx):\n    return ctx.steps.nope.output")])
    run_id = start(wf)
    work()
    run = detail(api, run_id)
    assert run["status"] == "failed"
    assert "no earlier step named 'nope'" in run["error"]


def test_logger_and_print_are_kept_with_the_run(app, define, work, api):
    wf = define(
        "chatty",
        [
            (
                "talk",
                "def run(ctx):\n"
                "    print('hello', 42)\n"
                "    ctx.logger.warning('careful', code=7)\n"
                "    ctx.logger.debug('details')\n"
                "    return 1",
            )
        ],
    )
    run_id = start(wf)
    work()
    lines = api.get(f"/api/runs/{run_id}/logs").json["data"]
    assert [(line["level"], line["message"], line["fields"]) for line in lines] == [
        ("print", "hello 42", None),
        ("warning", "careful", {"code": 7}),
        ("debug", "details", None),
    ]
    assert all(line["step"] == "talk" for line in lines)


def test_retries_back_off_exponentially_and_tasks_survive(app, define, work, api, tmp_path):
    marks = tmp_path / "attempts.txt"
    calls = tmp_path / "task_calls.txt"
    code = f"""
import time
def call_once():
    with open({str(calls)!r}, "a") as f:
        f.write("x")
    return "done"
def run(ctx):
    ctx.task("once", call_once)
    with open({str(marks)!r}, "a") as f:
        f.write(f"{{ctx.run.attempt}} {{time.time()}}\\n")
    if ctx.run.attempt < 3:
        raise RuntimeError(f"flaky attempt {{ctx.run.attempt}}")
    return ctx.run.attempt
"""
    wf = define("flaky", [step("flaky", code=code, retries=2, retry_delay=0.3)])
    run_id = start(wf)
    work(timeout=30)
    run = detail(api, run_id)
    assert run["status"] == "completed", run
    assert run["steps"][0]["attempts"] == 3
    assert run["output"] == 3
    times = [float(line.split()[1]) for line in marks.read_text().splitlines()]
    assert len(times) == 3
    # attempt n+1 starts retry_delay * 2^(n-1) after attempt n failed, never earlier
    assert times[1] - times[0] >= 0.3
    assert times[2] - times[1] >= 0.6
    assert calls.read_text() == "x", "a recorded task ran again on retry"
    warnings = [
        line["message"]
        for line in api.get(f"/api/runs/{run_id}/logs").json["data"]
        if line["level"] == "warning"
    ]
    assert warnings == [
        "attempt 1 failed; retrying in 0.3 s",
        "attempt 2 failed; retrying in 0.6 s",
    ]


def test_run_sleeps_between_attempts(app, define, work):
    wf = define(
        "slow_retry",
        [step("boom", code="def run(ctx):\n    raise ValueError('no')", retries=1, retry_delay=30)],
    )
    run_id = start(wf)
    work(until=lambda: run_status(run_id) == "sleeping")
    run = db.session.get(Run, run_id)
    assert run.wake_at > utcnow() + timedelta(seconds=25)
    # Not due yet: a delivered job cannot claim it (a timer never fires early).
    assert domain.claim_run(run_id, "early") is False
    assert run_status(run_id) == "sleeping"


def test_failure_keeps_the_traceback_with_the_step_line(app, define, work, api):
    wf = define(
        "fails",
        [
            ("ok", "def run(ctx):\n    return 1"),
            ("broken", "def run(ctx):\n    x = 1\n    return x / 0"),
            ("never", "def run(ctx):\n    return 2"),
        ],
    )
    run_id = start(wf)
    work()
    run = detail(api, run_id)
    assert run["status"] == "failed"
    assert "ZeroDivisionError" in run["error"]
    assert 'File "<step broken>", line 3' in run["error"]
    assert "return x / 0" in run["error"]
    assert [s["status"] for s in run["steps"]] == ["completed", "failed", "pending"]
    assert run["steps"][1]["error"] == run["error"]


def test_step_timeout_fails_the_step(app, define, work, api):
    wf = define(
        "sleepy", [step("nap", code="import time\ndef run(ctx):\n    time.sleep(10)", timeout=1)]
    )
    run_id = start(wf)
    began = time.monotonic()
    work()
    assert time.monotonic() - began < 8
    run = detail(api, run_id)
    assert run["status"] == "failed"
    assert "longer than its timeout of 1 s" in run["error"]


def test_output_must_be_json_serialisable(app, define, work, api):
    wf = define("unjson", [("obj", "def run(ctx):\n    return object()")])
    run_id = start(wf)
    work()
    run = detail(api, run_id)
    assert run["status"] == "failed"
    assert "the step's return value must be JSON-serialisable" in run["error"]


def test_task_result_must_be_json_serialisable(app, define, work, api):
    wf = define("unjson_task", [("t", "def run(ctx):\n    return ctx.task('k', set)")])
    run_id = start(wf)
    work()
    assert "the result of task 'k' must be JSON-serialisable" in detail(api, run_id)["error"]


def test_output_schema_is_checked_when_the_run_ends(app, define, work, api):
    schema = {"type": "object", "properties": {"total": {"type": "integer"}}, "required": ["total"]}
    wf = define(
        "typed", [("calc", "def run(ctx):\n    return {'total': 'many'}")], output_schema=schema
    )
    run_id = start(wf)
    work()
    run = detail(api, run_id)
    assert run["status"] == "failed"
    assert "output schema" in run["error"] and "/total" in run["error"]
    wf2 = define(
        "typed_ok", [("calc", "def run(ctx):\n    return {'total': 3}")], output_schema=schema
    )
    ok_id = start(wf2)
    work()
    assert detail(api, ok_id)["status"] == "completed"
    # A run ended early by ctx.flow.exit is checked too; its remaining steps are skipped.
    wf3 = define(
        "typed_exit",
        [
            ("stop", "def run(ctx):\n    ctx.flow.exit('nothing to add up')"),
            ("calc", "def run(ctx):\n    return {'total': 3}"),
        ],
        output_schema=schema,
    )
    exit_id = start(wf3)
    work()
    run = detail(api, exit_id)
    assert run["status"] == "failed" and "output schema" in run["error"]
    assert [s["status"] for s in run["steps"]] == ["completed", "skipped"]


def test_flow_exit_completes_and_skips_the_rest(app, define, work, api, tmp_path):
    side = tmp_path / "side.txt"
    wf = define(
        "early",
        [
            ("check", "def run(ctx):\n    return {'empty': True}"),
            (
                "stop",
                "def run(ctx):\n"
                "    try:\n"
                "        ctx.flow.exit('nothing to do')\n"
                "    except Exception:\n"
                "        return 'swallowed'\n",
            ),
            (
                "after",
                f"def run(ctx):\n    with open({str(side)!r}, 'w') as f:\n        f.write('ran')",
            ),
        ],
    )
    run_id = start(wf)
    work()
    run = detail(api, run_id)
    assert run["status"] == "completed"
    assert [s["status"] for s in run["steps"]] == ["completed", "completed", "skipped"]
    assert run["output"] is None
    assert not side.exists()
    logs = [line["message"] for line in api.get(f"/api/runs/{run_id}/logs").json["data"]]
    assert "run exited: nothing to do" in logs


def test_system_exit_in_a_step_fails_the_run_not_the_worker(app, define, work, api):
    wf = define("exits", [("bye", "import sys\ndef run(ctx):\n    sys.exit(3)")])
    run_id = start(wf)
    work()
    assert detail(api, run_id)["status"] == "failed"
    assert "SystemExit" in detail(api, run_id)["error"]


def held_step(folder, output):
    """A step that signals it executes (``folder/started``) and waits for ``folder/go``."""
    started, go = folder / "started", folder / "go"
    return (
        "import os, time\n"
        f"def run(ctx):\n    open({str(started)!r}, 'w').close()\n"
        f"    while not os.path.exists({str(go)!r}):\n        time.sleep(0.02)\n"
        f"    return {output!r}"
    )


def while_held(app, folder, run_id, *actions):
    """Apply ``actions`` to the run while its held step executes, as an operator would (step
    code cannot reach the console), then let the step go on."""

    def operate() -> None:
        deadline = time.monotonic() + 30
        while not (folder / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        with app.app_context():
            for action in actions:
                action(run_id)
            db.session.remove()
        (folder / "go").touch()

    thread = threading.Thread(target=operate)
    thread.start()
    return thread


def test_pause_takes_effect_at_the_next_step_boundary(app, define, work, api, tmp_path):
    side = tmp_path / "side.txt"
    # The run is paused while its first step executes: that step finishes, and the second
    # step does not start until resume.
    wf = define(
        "pausable",
        [
            ("first", held_step(tmp_path, "first done")),
            (
                "second",
                f"def run(ctx):\n    with open({str(side)!r}, 'a') as f:\n"
                "        f.write('2')\n    return 2",
            ),
        ],
    )
    run_id = start(wf)
    operator = while_held(app, tmp_path, run_id, domain.pause_run)
    work(until=lambda: run_status(run_id) == "paused")
    operator.join()
    run = detail(api, run_id)
    assert run["status"] == "paused"
    assert [s["status"] for s in run["steps"]] == ["completed", "pending"]
    assert not side.exists()
    assert db.session.get(Run, run_id).lease_owner is None
    resumed = api.post(f"/api/runs/{run_id}/resume")
    assert resumed.status_code == 200 and resumed.json["status"] == "pending"
    work()
    run = detail(api, run_id)
    assert run["status"] == "completed" and run["output"] == 2
    assert side.read_text() == "2"


def test_pause_then_resume_during_a_step_keeps_going(app, define, work, api, tmp_path):
    wf = define(
        "blip",
        [
            ("first", held_step(tmp_path, 1)),
            ("second", "def run(ctx):\n    return 2"),
        ],
    )
    run_id = start(wf)
    operator = while_held(app, tmp_path, run_id, domain.pause_run, domain.resume_run)
    work()
    operator.join()
    run = detail(api, run_id)
    assert run["status"] == "completed" and run["output"] == 2
    assert [s["attempts"] for s in run["steps"]] == [1, 1]


def test_pausing_a_sleeping_run_and_resuming_keeps_its_timer(app, define, work, api):
    wf = define(
        "nap_retry",
        [step("boom", code="def run(ctx):\n    raise ValueError('no')", retries=1, retry_delay=60)],
    )
    run_id = start(wf)
    work(until=lambda: run_status(run_id) == "sleeping")
    assert api.post(f"/api/runs/{run_id}/pause").json["status"] == "paused"
    assert api.post(f"/api/runs/{run_id}/pause").json["status"] == "paused"  # no-op
    assert api.post(f"/api/runs/{run_id}/resume").json["status"] == "sleeping"
    # Once the timer has passed while paused, resume makes it due at once.
    api.post(f"/api/runs/{run_id}/pause")
    db.session.execute(
        update(Run).where(Run.id == run_id).values(wake_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    assert api.post(f"/api/runs/{run_id}/resume").json["status"] == "pending"


def test_cancel_of_a_pending_run_means_it_never_starts(app, define, work, api, tmp_path):
    side = tmp_path / "side.txt"
    wf = define("doomed", [("touch", f"def run(ctx):\n    open({str(side)!r}, 'w').close()")])
    run_id = start(wf)
    canceled = api.post(f"/api/runs/{run_id}/cancel")
    assert canceled.status_code == 200 and canceled.json["status"] == "canceled"
    work()
    run = detail(api, run_id)
    assert run["status"] == "canceled" and run["started_at"] is None
    assert not side.exists()


@pytest.mark.parametrize("action", ["pause", "resume", "cancel"])
def test_actions_on_terminal_runs_answer_409(app, define, work, api, action):
    wf = define("done", [("x", "def run(ctx):\n    return 1")])
    run_id = start(wf)
    work()
    response = api.post(f"/api/runs/{run_id}/{action}")
    assert response.status_code == 409
    assert "completed" in response.json["error"]
    assert run_status(run_id) == "completed"


def test_concurrent_actions_resolve_to_one_allowed_state(app, define, make_api):
    wf = define("contested", [("x", "def run(ctx):\n    return 1")])
    run_id = start(wf)
    actions = ["pause", "resume", "cancel", "pause", "resume"] * 4
    results: list[tuple[str, int, str]] = []
    barrier = threading.Barrier(len(actions))
    apis = [make_api("operator") for _ in actions]

    def act(index: int) -> None:
        with app.app_context():
            barrier.wait()
            response = apis[index].post(f"/api/runs/{run_id}/{actions[index]}")
            results.append(
                (actions[index], response.status_code, (response.json or {}).get("status", ""))
            )

    threads = [threading.Thread(target=act, args=(i,)) for i in range(len(actions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == len(actions)
    assert all(code in (200, 409) for _, code, _ in results), results
    cancels = [r for r in results if r[0] == "cancel" and r[1] == 200]
    assert len(cancels) == 1, "exactly one cancel wins"
    assert run_status(run_id) == "canceled"
    # A 409 only ever answers an action on the canceled run.
    assert all(status == "" for _, code, status in results if code == 409)
    run = db.session.get(Run, run_id)
    assert run.finished_at is not None and run.lease_owner is None


def test_a_second_claim_fails_while_the_lease_is_held(app, define):
    wf = define("lease", [("x", "def run(ctx):\n    return 1")])
    run_id = start(wf)
    assert domain.claim_run(run_id, "worker-a") is True
    assert domain.claim_run(run_id, "worker-b") is False
    # After the lease expires another worker may take over, and the first is fenced out.
    db.session.execute(
        update(Run).where(Run.id == run_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    assert domain.claim_run(run_id, "worker-b") is True
    now = utcnow()
    outcome = domain.StepOutcome(
        name="x",
        position=0,
        status="completed",
        started_at=now,
        finished_at=now,
        attempts=1,
        output="from a",
    )
    assert domain.record_step_completed(domain.Claim(run_id, "worker-a"), outcome, 1, []) is None
    assert domain.record_task(domain.Claim(run_id, "worker-a"), "x", "k", 1, []) is False
    assert db.session.scalar(select(func.count()).select_from(StepRun)) == 0
    assert db.session.scalar(select(func.count()).select_from(TaskResult)) == 0
    outcome.output = "from b"
    assert (
        domain.record_step_completed(domain.Claim(run_id, "worker-b"), outcome, 1, []) == "running"
    )
    assert db.session.scalar(select(StepRun.output)) == "from b"


def test_a_late_duplicate_job_changes_nothing(app, define, work, api):
    wf = define("dup", [("x", "def run(ctx):\n    return ctx.task('k', lambda: 5)")])
    run_id = start(wf)
    work()
    assert Runner(run_id).advance() is None  # nothing to claim: the run is completed
    run = detail(api, run_id)
    assert run["status"] == "completed" and run["output"] == 5
    assert db.session.scalar(select(func.count()).select_from(TaskResult)) == 1


def test_replay_skips_completed_steps(app, define, work, api, tmp_path):
    side = tmp_path / "side.txt"
    code = (
        f"def run(ctx):\n    with open({str(side)!r}, 'a') as f:\n"
        "        f.write('x')\n    return 1"
    )
    wf = define(
        "replay",
        [
            ("a", code),
            ("b", code),
            ("c", "def run(ctx):\n    return ctx.steps.a.output + ctx.steps.b.output"),
        ],
    )
    run_id = start(wf)
    work()
    assert side.read_text() == "xx"
    # Pretend the worker died after b: the run is claimable again from its checkpoints.
    db.session.execute(
        update(StepRun).where(StepRun.run_id == run_id, StepRun.name == "c").values(status="failed")
    )
    db.session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(
            status="running",
            current_step=2,
            finished_at=None,
            lease_owner="dead",
            lease_expires_at=utcnow() - timedelta(seconds=1),
        )
    )
    db.session.commit()
    assert Runner(run_id).advance() == "completed"
    assert side.read_text() == "xx", "completed steps were executed again"
    assert detail(api, run_id)["output"] == 2


def test_log_lines_are_written_with_the_checkpoint(app, define, work):
    wf = define("logs_once", [("a", "def run(ctx):\n    ctx.logger.info('once')\n    return 1")])
    run_id = start(wf)
    work()
    assert (
        db.session.scalar(select(func.count()).select_from(LogLine).where(LogLine.run_id == run_id))
        == 1
    )


def test_compute_time_and_durations_are_recorded(app, define, work, api):
    wf = define("timed", [("nap", "import time\ndef run(ctx):\n    time.sleep(0.2)\n    return 1")])
    run_id = start(wf)
    work()
    run = detail(api, run_id)
    assert run["compute_ms"] >= 200
    assert run["steps"][0]["duration_ms"] >= 200
    started = datetime.fromisoformat(run["steps"][0]["started_at"].replace("Z", "+00:00"))
    assert started.tzinfo is not None


def test_nan_is_refused_in_outputs_and_inputs(app, define, work, api):
    wf = define("nan", [("x", "def run(ctx):\n    return float('nan')")])
    run_id = start(wf)
    work()
    run = detail(api, run_id)
    assert run["status"] == "failed" and "JSON-serialisable" in run["error"]
    response = api.post(
        "/api/workflows/nan/runs",
        data='{"input": {"x": NaN}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400 and "NaN" in response.json["error"]


def test_a_step_that_ran_while_its_run_was_canceled_is_kept_as_canceled(
    app, define, work, make_api, tmp_path
):
    """The worker finishes executing the step after the cancel: the step's timing and log
    lines are kept on a canceled step (not left pending), and nothing after it runs."""
    started, go, after = tmp_path / "started", tmp_path / "go", tmp_path / "after"
    wait = f"""import os, time
def run(ctx):
    ctx.logger.info("working")
    open({str(started)!r}, "w").close()
    for _ in range(300):
        if os.path.exists({str(go)!r}):
            break
        time.sleep(0.05)
    return {{"done": True}}
"""
    wf = define(
        "cut_short",
        [("slow", wait), ("next", f"def run(ctx):\n    open({str(after)!r}, 'w').close()")],
    )
    run_id = start(wf)
    api = make_api("operator")
    answers = []

    def cancel_while_it_runs() -> None:
        with app.app_context():
            for _ in range(300):
                if started.exists():
                    break
                time.sleep(0.05)
            answers.append(api.post(f"/api/runs/{run_id}/cancel").status_code)
            go.touch()

    canceller = threading.Thread(target=cancel_while_it_runs)
    canceller.start()
    work()
    canceller.join()

    assert answers == [200]
    run = detail(api, run_id)
    assert run["status"] == "canceled" and not after.exists()
    slow, following = run["steps"]
    assert slow["status"] == "canceled" and slow["output"] is None
    assert slow["error"] == domain.CANCELED_WHILE_RUNNING
    assert slow["duration_ms"] is not None and slow["started_at"] is not None
    assert following["status"] == "pending"
    db.session.expire_all()
    logs = db.session.scalars(select(LogLine.message).where(LogLine.run_id == run_id)).all()
    assert logs == ["working"]
    stored = db.session.get(Run, run_id)
    assert stored.lease_owner is None and stored.compute_ms > 0


@pytest.mark.slow
def test_a_pause_at_any_moment_lets_at_most_the_running_step_finish(app, define, work):
    """Pauses land at random moments of a run of short steps (another thread, its own
    session): every time, at most the step that was executing completes after the pause."""
    import random

    step_code = "def run(ctx):\n    import time\n    time.sleep(0.1)\n    return 1"
    wf = define("paused_anywhere", [(f"s{i}", step_code) for i in range(5)])
    late = []
    for attempt in range(15):
        run_id = start(wf)
        seen: dict[str, int] = {}

        def pause_soon(run_id: str = run_id, seen: dict[str, int] = seen) -> None:
            with app.app_context():
                while steps_completed(run_id) < 1:
                    time.sleep(0.005)
                time.sleep(random.random() * 0.1)
                domain.pause_run(run_id)
                seen["at_pause"] = steps_completed(run_id)

        pauser = threading.Thread(target=pause_soon)
        pauser.start()

        def let_go(run_id: str = run_id, seen: dict[str, int] = seen) -> bool:
            if "at_pause" not in seen:
                return False
            db.session.expire_all()
            owner = db.session.scalar(select(Run.lease_owner).where(Run.id == run_id))
            db.session.commit()
            return owner is None  # the worker has stopped at a boundary

        work(timeout=20, until=let_go)
        pauser.join()
        if steps_completed(run_id) > seen["at_pause"] + 1 or run_status(run_id) != "paused":
            late.append((attempt, seen["at_pause"], steps_completed(run_id), run_status(run_id)))
    assert late == []
