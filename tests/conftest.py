"""Fixtures: a real Redis (the embedded server), SQLite and PostgreSQL backends, the app, its
clients, and real worker and scheduler processes for the durability tests.

``--db=sqlite,postgres`` (what ``make test`` passes) runs every test that uses the ``app``
fixture on both databases; plain ``pytest`` runs on SQLite only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask, g
from flask.testing import FlaskClient

from console import create_app
from console.auth import create_token, create_user
from console.definitions import save_workflow
from console.extensions import db
from console.models import TERMINAL, Run, User
from console.redis_server import ensure_embedded, stop_embedded
from workers.app import set_app

from .pgserver import PostgresServer
from .support import log_in, step

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        default=os.environ.get("TEST_DATABASES", "sqlite"),
        help="comma-separated backends for app tests: sqlite,postgres",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = [b.strip() for b in metafunc.config.getoption("--db").split(",") if b.strip()]
        if metafunc.definition.get_closest_marker("sqlite_only"):
            backends = [b for b in backends if b == "sqlite"] or ["sqlite"]
        metafunc.parametrize("backend", backends, indirect=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: run on SQLite only")
    config.addinivalue_line("markers", "browser: drives Debian's Chromium with Playwright")


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A fresh folder that step code can write too: steps run as ``STEP_USER`` (``nobody``)
    when the tests run as root, and pytest's own temporary tree is private to root. What must
    stay private in it (the instance folder) is made so."""
    folder = Path(tempfile.mkdtemp(prefix="console-test-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("redis")
    url = ensure_embedded(str(folder))
    yield url
    stop_embedded(str(folder))


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    # Not under pytest's tmp folder: that is private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="console-pg-"))
    server = PostgresServer(base)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def redis_conn(redis_url: str) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(redis_url)


@pytest.fixture
def app_env(
    backend: str,
    tmp_path: Path,
    redis_url: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The environment the app and its worker processes share."""
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)  # as the console makes a new one: steps cannot read it
    if backend == "postgres":
        server = request.getfixturevalue("pg")
        url = server.create_database(f"t_{uuid.uuid4().hex[:12]}")
    else:
        url = f"sqlite:///{instance / 'console.db'}"
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "CONSOLE_INSTANCE_PATH": str(instance),
        "SECRET_KEY": "test-secret",
        "BASE_URL": "http://console.test",
        "RUN_LEASE_SECONDS": "3",
        "RECONCILE_INTERVAL": "0.5",
        "CONSOLE_ENV": "development",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def app(app_env: dict[str, str], redis_conn: redis_lib.Redis) -> Iterator[Flask]:
    redis_conn.flushall()
    app = create_app({"TESTING": True})

    @app.before_request
    def _fresh_g() -> None:
        # The fixture keeps an app context pushed and Flask reuses it for test requests, so
        # ``g`` (Flask-Login's cached user, the token flags) would leak between requests.
        for name in ("_login_user", "token_auth", "bad_token", "csrf_token"):
            g.pop(name, None)

    with app.app_context():
        db.create_all()
    set_app(app)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


class Auth:
    """Logs the test client in and out through the login form, as a person of a role.

    ``auth.login("operator")`` creates ``operator@example.com`` (once) and returns the CSRF
    token of the session, which the forms of the pages need.
    """

    PASSWORD = "s3cret-pass"

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.token: str | None = None

    def login(
        self, role: str = "viewer", email: str | None = None, password: str = PASSWORD
    ) -> str:
        email = email or f"{role}@example.com"
        if db.session.scalar(db.select(User.id).filter_by(email=email)) is None:
            create_user(email, role, password)
        self.token = log_in(self.client, email, password)
        return self.token

    def logout(self) -> None:
        answer = self.client.post("/logout", data={"csrf_token": self.token})
        assert answer.status_code == 302, answer.status_code
        self.token = None


@pytest.fixture
def auth(client: FlaskClient) -> Auth:
    return Auth(client)


class Api:
    """A test client that authenticates with a bearer token and speaks JSON."""

    def __init__(self, client: FlaskClient, token: str | None) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = dict(self.headers, **kwargs.pop("headers", {}))
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Any:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)


@pytest.fixture
def make_api(app: Flask) -> Callable[[str], Api]:
    def make(role: str = "admin") -> Api:
        user, _ = create_user(f"{role}-{uuid.uuid4().hex[:6]}@example.com", role, "password1")
        return Api(app.test_client(), create_token(user))

    return make


@pytest.fixture
def api(make_api: Callable[[str], Api]) -> Api:
    return make_api("admin")


@pytest.fixture
def define(app: Flask) -> Callable[..., Any]:
    """Publish a workflow from (name, code) pairs or step dicts."""

    def make(name: str, steps: list[Any], **fields: Any) -> Any:
        body = [s if isinstance(s, dict) else step(s[0], code=s[1]) for s in steps]
        workflow, version, _ = save_workflow({"name": name, "steps": body, **fields})
        return workflow

    return make


def drain(app: Flask, timeout: float = 30.0, until: Callable[[], bool] | None = None) -> None:
    """Work the run queue in this process (SimpleWorker) and deliver timers until every run
    is terminal, or ``until()`` is true."""
    from rq import Queue

    from console.queueing import get_redis
    from workers import reconciler
    from workers.worker import SimpleConsoleWorker

    deadline = time.monotonic() + timeout
    queue = Queue(app.config["RUN_QUEUE"], connection=get_redis())
    while True:
        SimpleConsoleWorker([queue], connection=get_redis()).work(
            burst=True, logging_level="WARNING"
        )
        reconciler.wake_due_timers()
        reconciler.time_out_suspensions()
        db.session.expire_all()
        done = (
            until()
            if until
            else all(r.status in TERMINAL for r in db.session.scalars(db.select(Run)))
        )
        db.session.commit()
        if done:
            return
        if time.monotonic() > deadline:
            raise AssertionError("runs did not finish in time")
        time.sleep(0.05)


@pytest.fixture
def work(app: Flask) -> Callable[..., None]:
    def run(timeout: float = 30.0, until: Callable[[], bool] | None = None) -> None:
        drain(app, timeout, until)

    return run


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


class Processes:
    """Real ``flask worker`` and ``flask scheduler`` processes, killed at teardown."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = dict(os.environ, **env, FLASK_APP="console", PYTHONUNBUFFERED="1")
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, name: str = "proc") -> subprocess.Popen[bytes]:
        # The child keeps its own copy of the file descriptor; ours is closed at once.
        with open(self.logs / f"{name}-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "console", *args],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        return self.start("worker", *args, name="worker")

    def scheduler(self) -> subprocess.Popen[bytes]:
        return self.start("scheduler", name="scheduler")

    @staticmethod
    def children(pid: int) -> list[int]:
        path = Path(f"/proc/{pid}/task/{pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            return []

    def kill_tree(self, proc: subprocess.Popen[bytes]) -> None:
        """kill -9 the process and its children (an RQ worker and its work-horse).

        The work-horse has a process group of its own, so it is killed by pid. The worker is
        stopped first: between the two kills it could otherwise fork a new work-horse that
        nobody kills.
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGSTOP)
        for child in self.children(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill_tree(proc)

    def output(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.logs.glob("*.log"))
        )


@pytest.fixture
def processes(app: Flask, app_env: dict[str, str], tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(app_env, logs)
    yield procs
    procs.stop_all()


def run_status(run_id: str) -> str:
    db.session.commit()  # a read transaction left open (a lazy load) would read an old snapshot
    db.session.expire_all()
    status = db.session.scalar(db.select(Run.status).where(Run.id == run_id))
    db.session.commit()
    return str(status)


def steps_completed(run_id: str) -> int:
    """How many of the run's steps have a completed checkpoint now (see ``run_status``)."""
    from console.models import StepRun

    db.session.commit()
    count = db.session.scalar(
        db.select(db.func.count())
        .select_from(StepRun)
        .where(StepRun.run_id == run_id, StepRun.status == "completed")
    )
    db.session.commit()
    return int(count or 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveStack:
    """A web server (``flask run``), a worker and the scheduler as real processes."""

    def __init__(self, processes: Processes, base: str) -> None:
        self.processes = processes
        self.base = base

    def url(self, path: str) -> str:
        return self.base + path

    def until(self, predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        try:
            return wait_for(predicate, timeout, 0.1, message=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.processes.output()}") from None


@pytest.fixture
def live(app: Flask, processes: Processes, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveStack]:
    """The whole stack on a free port; links and ``BASE_URL`` point at it."""
    import requests

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes.env["BASE_URL"] = base
    monkeypatch.setenv("BASE_URL", base)
    app.config["BASE_URL"] = base
    processes.start("run", "--host", "127.0.0.1", "--port", str(port), "--no-reload", name="web")

    def up() -> bool:
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code in (200, 503)
        except requests.RequestException:
            return False

    stack = LiveStack(processes, base)
    stack.until(up, "the web server")
    processes.worker()
    processes.scheduler()
    yield stack


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (which cannot download browsers here)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run ./scripts/install-system-deps.sh")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh browser context at 1280 px in a timezone that is not UTC, so that pages that
    show dates in the viewer's timezone are really tested."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="Asia/Seoul", locale="en-GB"
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Chromium reports what the Content-Security-Policy refused (an inline style or script,
    # eval) on the console only.
    refused: list[str] = []
    page.on(
        "console",
        lambda msg: refused.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not refused, f"refused by the Content-Security-Policy: {refused}"


def browser_log_in(page: Any, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)


SCREENSHOTS = ROOT / "instance" / "screenshots"


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under instance/screenshots/ (for people to look at)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
