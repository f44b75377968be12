"""HyperFlow's scenario with real processes: a run killed (``kill -9``) in its third step, after
a ``ctx.task`` there recorded its result; its journal recovered by the command line of a
second console on an empty database; that run's own journal recovered a third time, back on
the first console, with nothing executed again. Side effects go to a file, one line per
execution, so the test counts what really ran."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from console.extensions import db
from console.models import Run
from tests.conftest import ROOT, Processes, run_status, wait_for

from .support import step

pytestmark = pytest.mark.slow


def noting(name: str, body: str) -> dict[str, Any]:
    lines = [
        "import os, time",
        "with open(ctx.input['log'], 'a') as f:",
        f"    f.write({name!r} + '\\n')",
        *body.splitlines(),
    ]
    return step(name, "\n".join(lines))


CHARGE = """\
def charge():
    with open(ctx.input['log'], 'a') as f:
        f.write('task\\n')
    return 40
value = ctx.task('charge', charge)
with open(ctx.input['log'], 'a') as f:
    f.write('s3\\n')
while not os.path.exists(ctx.input['release']):
    time.sleep(0.05)
return value + ctx.steps.s2.output"""

WORKFLOW = {
    "name": "hyperflow",
    "steps": [
        noting("s1", "return 1"),
        noting("s2", "return ctx.steps.s1.output + 1"),
        step("s3", "import os, time\n" + CHARGE),
        noting("s4", "return ctx.steps.s3.output + 1"),
    ],
}


def effects(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


def flask(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "console", *args],
        env=dict(os.environ, **env, FLASK_APP="console"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"flask {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def second_console(app_env: dict[str, str], backend: str, tmp_path: Path, request: Any) -> dict:
    """The environment of another console: its own empty database, instance and queues."""
    instance = tmp_path / "second"
    instance.mkdir(mode=0o700)
    if backend == "postgres":
        url = request.getfixturevalue("pg").create_database(f"t_{uuid.uuid4().hex[:12]}")
    else:
        url = f"sqlite:///{instance / 'console.db'}"
    env = dict(
        app_env,
        DATABASE_URL=url,
        CONSOLE_INSTANCE_PATH=str(instance),
        RUN_QUEUE="runs_second",
        TEST_QUEUE="tests_second",
    )
    flask(env, "db", "upgrade")
    return env


def test_a_killed_run_continues_from_its_journal_on_an_empty_console(
    app: Any,
    api: Any,
    processes: Processes,
    tmp_path: Path,
    backend: str,
    request: Any,
    app_env: dict[str, str],
    work: Any,
) -> None:
    log, release = tmp_path / "effects.txt", tmp_path / "release"
    assert api.put("/api/workflows/hyperflow", json=WORKFLOW).status_code == 201
    worker = processes.worker()
    run_id = api.post(
        "/api/workflows/hyperflow/runs", json={"input": {"log": str(log), "release": str(release)}}
    ).json["id"]
    wait_for(lambda: effects(log)["s3"] == 1, 60, message=f"step 3\n{processes.output()}")
    processes.kill_tree(worker)
    assert run_status(run_id) == "running"
    journal = api.get(f"/api/runs/{run_id}/journal").json
    types = [(e["type"], e.get("step")) for e in journal["entries"]]
    assert ("task", "s3") in types and ("step_completed", "s3") not in types
    path = tmp_path / "journal.json"
    path.write_text(json.dumps(journal))
    release.touch()

    second = second_console(app_env, backend, tmp_path, request)
    other = Processes(second, tmp_path / "logs")
    try:
        other.worker()
        out = flask(second, "runs", "recover", str(path), "--wait")
    finally:
        other.stop_all()
    assert re.search(r"reuse\s+s1", out) and re.search(r"execute\s+s3", out), out
    new_id = re.search(r"Started run (\w+)", out).group(1)
    recovered = json.loads(flask(second, "runs", "show", new_id))
    assert recovered["status"] == "completed", out
    assert recovered["trigger"] == "recover" and recovered["recovered_from"] == run_id
    assert recovered["output"] == 43
    assert [s["reused"] for s in recovered["steps"]] == [True, True, False, False]
    # s1 and s2 did not execute again, nor the task; s3 did (its killed execution had not
    # completed), with the recorded task result; s4 executed once.
    assert effects(log) == Counter(s1=1, s2=1, task=1, s3=2, s4=1), processes.output()

    again = tmp_path / "again.json"
    flask(second, "runs", "journal", new_id, "-o", str(again))
    third = api.post("/api/journals", json=json.loads(again.read_text()))
    assert third.status_code == 202, third.json
    assert third.json["version"] == "v1"  # the first console's identical version
    assert {s["action"] for s in third.json["plan"]["steps"]} == {"reuse"}
    work(until=lambda: db.session.get(Run, third.json["id"]).status == "completed")
    final = api.get(f"/api/runs/{third.json['id']}").json
    assert final["output"] == 43 and final["recovered_from"] == new_id
    assert all(s["reused"] for s in final["steps"])
    assert effects(log) == Counter(s1=1, s2=1, task=1, s3=2, s4=1)
