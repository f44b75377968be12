"""Migrations, the rq-scheduler path and ``flask up``, each through real processes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, Processes, wait_for
from tests.support import run_sql


def flask(env, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "console", *args],
        env=dict(os.environ, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_migrations_build_the_models_schema(app_env):
    upgraded = flask(app_env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    # alembic's check: autogenerate finds no difference between migrations and models.
    checked = flask(app_env, "db", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr


def test_migration_0004_gives_existing_workflows_a_webhook_nonce(app_env):
    assert flask(app_env, "db", "upgrade", "0003").returncode == 0
    for name in ("old_one", "old_two"):
        run_sql(
            app_env,
            "INSERT INTO workflows (name, title, description, created_at, updated_at, "
            f"draft_revision) VALUES ('{name}', '', '', '2026-01-01', '2026-01-01', 0)",
        )
    assert run_sql(app_env, "SELECT webhook_nonce FROM workflows") == "[None, None]"
    assert flask(app_env, "db", "upgrade").returncode == 0
    nonces = run_sql(app_env, "SELECT webhook_nonce FROM workflows ORDER BY name")
    assert re.fullmatch(r"\['[0-9a-f]{32}', '[0-9a-f]{32}'\]", nonces), nonces
    assert len(set(nonces.split(","))) == 2  # each its own


@pytest.mark.slow
def test_rq_scheduler_moves_due_jobs_with_the_pinned_rq(app, processes, redis_conn, tmp_path):
    """rq-scheduler 0.14 with rq 3: the scheduler process enqueues a due job, a worker runs it."""
    from rq import Queue
    from rq_scheduler import Scheduler

    marker = tmp_path / "fired.txt"
    scheduler = Scheduler(queue_name=app.config["RUN_QUEUE"], connection=redis_conn)
    job = scheduler.enqueue_at(
        datetime.now(UTC) + timedelta(seconds=1), "tests.jobs.write_marker", str(marker)
    )
    assert job in scheduler
    processes.scheduler()
    processes.worker()
    wait_for(marker.exists, 60, message="the scheduled job to run\n" + processes.output())
    assert marker.read_text() == "fired"
    assert Queue(app.config["RUN_QUEUE"], connection=redis_conn).count == 0
    assert job not in scheduler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_flask_up_runs_the_whole_stack(tmp_path, backend):
    """From an empty instance folder: migrations, embedded Redis, admin, web, worker and
    scheduler; a run started through the API completes; a killed worker is restarted."""
    port = free_port()
    instance = tmp_path / "instance"
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "DATABASE_URL",
            "REDIS_URL",
            "SECRET_KEY",
            "CONSOLE_ADMIN_EMAIL",
            "CONSOLE_ADMIN_PASSWORD",
            "BASE_URL",
        )
    }
    env.update(CONSOLE_INSTANCE_PATH=str(instance), PORT=str(port), PYTHONUNBUFFERED="1")
    # gunicorn's default control socket is in the home folder (or XDG_RUNTIME_DIR), shared by
    # every stack on the machine: this one's must be in its instance folder instead.
    home = tmp_path / "home"
    home.mkdir()
    env["HOME"] = str(home)
    env.pop("XDG_RUNTIME_DIR", None)
    log_path = tmp_path / "up.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "console", "up"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy():
            try:
                r = requests.get(f"{base}/healthz", timeout=2)
                return r.status_code == 200 and r.json()["workers"] >= 1
            except requests.RequestException:
                return False

        wait_for(healthy, 90, 0.5, message="flask up to be healthy\n" + log_path.read_text())
        output = log_path.read_text()
        assert f"Workflow console: {base}" in output

        # A command in another terminal, without PORT, prints links to this stack.
        other = {k: v for k, v in env.items() if k != "PORT"}
        seen = subprocess.run(
            [
                sys.executable,
                "-c",
                "from console import create_app; print(create_app().config['BASE_URL'])",
            ],
            env=other,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert seen.stdout.strip() == base, seen.stderr
        assert re.search(r"Imported \d+ example workflows into the empty database", output)
        password = re.search(r"Log in as admin@localhost with password (\S+)", output).group(1)
        assert (instance / "console.db").exists() and (instance / "redis.sock").exists()
        assert (instance / "gunicorn.ctl").is_socket() and not list(home.iterdir())
        # Created private to the console's user.
        assert instance.stat().st_mode & 0o777 == 0o700
        assert (instance / "console.db").stat().st_mode & 0o777 == 0o600

        # The printed credentials log in on the page.
        session = requests.Session()
        page = session.get(f"{base}/login", timeout=5).text
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        home = session.post(
            f"{base}/login",
            data={"email": "admin@localhost", "password": password, "csrf_token": csrf},
            timeout=5,
        )
        assert home.url == f"{base}/tasks"
        assert "<h1>Tasks</h1>" in home.text

        # A token from the CLI, a workflow over the API, a run that completes.
        token = flask(env, "tokens", "create", "admin@localhost").stdout.strip().splitlines()[-1]
        auth = {"Authorization": f"Bearer {token}"}
        definition = {
            "steps": [
                {"name": "a", "code": "def run(ctx):\n    return 41"},
                {"name": "b", "code": "def run(ctx):\n    return ctx.steps.a.output + 1"},
            ]
        }
        assert (
            requests.put(
                f"{base}/api/workflows/answer", json=definition, headers=auth, timeout=5
            ).status_code
            == 201
        )
        started = requests.post(
            f"{base}/api/workflows/answer/runs", json={}, headers=auth, timeout=5
        ).json()

        def finished():
            run = requests.get(f"{base}/api/runs/{started['id']}", headers=auth, timeout=5).json()
            return run if run["status"] == "completed" else None

        assert wait_for(finished, 60, 0.3, message="the run")["output"] == 42

        # An example imported at start calls the demo service at BASE_URL from a worker.
        example = requests.post(
            f"{base}/api/workflows/poll_external_job/runs",
            json={"input": {"job_seconds": 0, "result": "ok"}},
            headers=auth,
            timeout=5,
        ).json()

        def example_done():
            run = requests.get(f"{base}/api/runs/{example['id']}", headers=auth, timeout=5).json()
            return run if run["status"] in ("completed", "failed") else None

        assert wait_for(example_done, 60, 0.3, message="the example")["output"]["result"] == "ok"

        # The supervisor restarts a worker that dies.
        worker_pid = next(
            pid
            for pid in Processes.children(proc.pid)
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[-2] == b"worker"
        )
        os.kill(worker_pid, signal.SIGKILL)
        wait_for(lambda: "worker.1 exited" in log_path.read_text(), 30, message="restart notice")
        wait_for(healthy, 60, 0.5, message="a restarted worker")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        redis_left = (instance / "redis.pid").exists()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from console.redis_server import stop_embedded; "
                "stop_embedded(sys.argv[1])",
                str(instance),
            ],
            cwd=ROOT,
        )
        log.close()
    assert proc.returncode is not None
    assert not (instance / "base_url").exists()  # a stopped stack is not pointed at
    # The embedded Redis that `flask up` started stops with it (its data stays).
    assert not redis_left, log_path.read_text()
    assert "Stopped the embedded Redis" in log_path.read_text()
    assert (instance / "redis.aof").exists() or (instance / "appendonlydir").exists()
