from tests.conftest import run_status


def test_two_step_run_completes(app, define, work, api):
    define(
        "hello",
        [
            ("one", "def run(ctx):\n    return ctx.input['n'] * 2"),
            ("two", "def run(ctx):\n    return ctx.steps.one.output + 1"),
        ],
    )
    started = api.post("/api/workflows/hello/runs", json={"input": {"n": 4}})
    assert started.status_code == 202, started.json
    work()
    assert run_status(started.json["id"]) == "completed"
    run = api.get(f"/api/runs/{started.json['id']}").json
    assert run["output"] == 9
    assert [s["output"] for s in run["steps"]] == [8, 9]
