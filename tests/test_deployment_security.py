"""What a deployment keeps to itself: security headers on every answer, production recognised
and its key checked, secrets out of logs and out of a callback's stored headers, a private
instance folder, and a gunicorn of its own (control socket, keepalive) per stack.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shlex
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from console import create_app
from console.access_log import redact
from console.auth import create_user
from console.cli import web_command
from tests.conftest import ROOT, free_port, wait_for
from tests.support import log_in
from tests.test_links import (
    APPROVAL,
    NEXT,
    POLL,
    links_of,
    path_of,
    show,
    start,
    status_of,
    step_of,
    suspended_runs,
)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------ security headers


def assert_security_headers(response, referrer="same-origin"):
    headers = response.headers
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == referrer


def test_security_headers_on_pages_api_answers_static_files_and_link_pages(
    app, client, api, define, work
):
    create_user("viewer@example.com", "viewer", "s3cret-pass")
    log_in(client, "viewer@example.com", "s3cret-pass")
    page = client.get("/tasks")
    assert page.status_code == 200
    assert_security_headers(page)
    with client.get("/static/console.js") as static:
        assert_security_headers(static)
    answer = api.get("/api/workflows")
    assert answer.status_code == 200
    assert_security_headers(answer)
    assert_security_headers(client.get("/login"))

    # A link page's URL is its credential: it sends no referrer, not even to the console.
    define("approval", APPROVAL)
    (run_id,) = suspended_runs(api, work, "approval", 1)
    confirm = client.get(links_of(api, run_id)["resume"])
    assert confirm.status_code == 200 and b"<form" in confirm.data
    assert_security_headers(confirm, referrer="no-referrer")
    assert_security_headers(client.get("/flow/resume/not-a-token"), referrer="no-referrer")
    hook = client.post("/hooks/approval/not-the-secret", json={})
    assert hook.status_code == 404
    assert_security_headers(hook, referrer="no-referrer")
    assert "Strict-Transport-Security" not in page.headers  # development: plain HTTP


def test_templates_have_no_inline_script_style_or_handler():
    """What the Content-Security-Policy refuses to run or apply."""
    found = []
    for template in (ROOT / "templates").rglob("*.html"):
        html = template.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)", r"\sstyle=", r"\son[a-z]+=", r"hx-on", "<style"):
            if re.search(pattern, html):
                found.append(f"{template.relative_to(ROOT)}: {pattern}")
    assert not found


# ------------------------------------------------------------------------------ production


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    for name in ("SECRET_KEY", "CONSOLE_ENV", "FLASK_ENV", "SECRET_KEY_FALLBACKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONSOLE_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    return monkeypatch


@pytest.mark.parametrize("variable", ["CONSOLE_ENV", "FLASK_ENV"])
@pytest.mark.parametrize("key", [None, "", "short-key", "x" * 31])
def test_production_refuses_a_missing_or_short_secret_key(clean_env, tmp_path, variable, key):
    clean_env.setenv(variable, "production")
    if key is not None:
        clean_env.setenv("SECRET_KEY", key)
    with pytest.raises(RuntimeError) as refused:
        create_app()
    message = str(refused.value)
    assert "SECRET_KEY must be set in production to at least 32 random characters" in message
    assert "python -c 'import secrets; print(secrets.token_hex(32))'" in message
    assert not (tmp_path / "instance" / "secret_key").exists()  # no key made up


@pytest.mark.parametrize("variable", ["CONSOLE_ENV", "FLASK_ENV"])
def test_production_sends_cookies_and_pages_over_https_only(clean_env, variable):
    clean_env.setenv(variable, "production")
    clean_env.setenv("SECRET_KEY", secrets.token_hex(16))  # 32 characters
    app = create_app()
    assert app.config["CONSOLE_ENV"] == "production"
    assert app.config["SESSION_COOKIE_SECURE"] is True
    with app.test_client().get("/static/console.js") as response:
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_development_is_the_default(clean_env):
    app = create_app()
    assert app.config["CONSOLE_ENV"] == "development"
    assert app.config["SESSION_COOKIE_SECURE"] is False


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_every_procfile_process_runs_in_production():
    processes = procfile()
    assert set(processes) == {"release", "web", "worker", "scheduler"}
    for name, command in processes.items():
        for part in command.split("&&"):
            assert shlex.split(part)[0] == "CONSOLE_ENV=production", f"{name}: {part}"


def test_flask_up_runs_the_web_process_as_the_procfile_does():
    web = shlex.split(procfile()["web"])
    assert web[1:] == web_command("gunicorn", "0.0.0.0:$PORT")


# ------------------------------------------------------------------------- secrets in logs


@pytest.mark.parametrize(
    "line,expected",
    [
        ('"GET /flow/resume/abc-DEF_1 HTTP/1.1"', '"GET /flow/resume/[redacted] HTTP/1.1"'),
        ("/flow/cancel/tok?x=1", "/flow/cancel/[redacted]?x=1"),
        ("POST //hooks//signup/s3cr3t", "POST //hooks//signup/[redacted]"),
        ("http://h:5000/hooks/signup/s3cr3t#x", "http://h:5000/hooks/signup/[redacted]#x"),
        ("/fl%6Fw/resume/tok", "/flow/resume/[redacted]"),
        ("/FLOW/Resume/tok", "/FLOW/Resume/[redacted]"),
        ("/flow/resume/", "/flow/resume/"),
        ("/api/runs/abc/links", "/api/runs/abc/links"),
        ("/tasks?status=%20x", "/tasks?status=%20x"),
    ],
)
def test_redact_hides_link_tokens_and_webhook_secrets(line, expected):
    assert redact(line) == expected


def test_flask_logs_a_failing_link_request_without_its_token(app, caplog):
    with caplog.at_level(logging.ERROR):
        app.logger.error("Exception on %s [%s]", "/flow/resume/s3cr3t-token", "POST")
    assert "s3cr3t-token" not in caplog.text
    assert "Exception on /flow/resume/[redacted] [POST]" in caplog.text


def test_gunicorns_error_log_shows_no_token(tmp_path):
    """gunicorn logs "Error handling request <uri>" when the app fails outside Flask."""
    from gunicorn.config import Config as GunicornConfig

    from console.access_log import RedactingLogger

    cfg = GunicornConfig()
    cfg.set("errorlog", str(tmp_path / "error.log"))
    log = RedactingLogger(cfg)
    log.exception("Error handling request %s", "/hooks/signup/HOOKSECRET")
    for handler in list(log.error_log.handlers):  # gunicorn's logger is global
        log.error_log.removeHandler(handler)
        handler.close()
    text = (tmp_path / "error.log").read_text()
    assert "Error handling request /hooks/signup/[redacted]" in text
    assert "HOOKSECRET" not in text


# --------------------------------------------------------------------- callback's headers


def test_a_callback_keeps_no_credential_header(app, define, api, work, client, tmp_path):
    url_file = tmp_path / "url.txt"
    define("poll", [("poll", POLL), ("next", NEXT)])
    run_id = start(api, "poll", delay=30, max_retries=1, url_file=str(url_file))
    work(until=lambda: status_of(run_id) == "sleeping")
    names = [
        "X-Api-Key",
        "X-Auth-Token",
        "Proxy-Authorization",
        "X-Webhook-Secret",
        "X-Github-Token",
        "Api-Key",
        "X-ApiKey",
        "X-User-Password",
        "Authorization",
    ]
    credentials = {name: f"Cred3ntial-{i}" for i, name in enumerate(names)}
    answer = client.post(
        path_of(url_file.read_text()),
        json={"ok": 1},
        headers={**credentials, "X-Signature": "sig-1", "X-Request-Id": "req-1"},
    )
    assert answer.status_code == 200, answer.json
    work(timeout=20)
    run = show(api, run_id)
    assert run["status"] == "completed", run
    headers = {
        k.lower(): v for k, v in step_of(run, "poll")["output"]["callback"]["headers"].items()
    }
    assert headers["x-signature"] == "sig-1" and headers["x-request-id"] == "req-1"
    assert not {name.lower() for name in credentials} & set(headers)
    assert "Cred3ntial" not in str(run)


# ------------------------------------------------------------------------- instance folder


def test_a_new_instance_folder_and_database_are_private(clean_env, tmp_path):
    instance = tmp_path / "deep" / "instance"
    clean_env.setenv("CONSOLE_INSTANCE_PATH", str(instance))
    clean_env.setenv("DATABASE_URL", f"sqlite:///{instance / 'console.db'}")
    app = create_app()
    assert mode(instance) == 0o700
    assert mode(instance / "console.db") == 0o600
    assert mode(instance / "secret_key") == 0o600
    with app.app_context():
        from console.extensions import db

        db.create_all()  # SQLite writes into the file that was made private
        assert mode(instance / "console.db") == 0o600
        for extra in instance.glob("console.db-*"):  # WAL and shared memory files
            assert mode(extra) == 0o600, extra
        db.engine.dispose()


def test_an_existing_instance_folder_keeps_its_mode(clean_env, tmp_path):
    instance = tmp_path / "shared"
    instance.mkdir()
    instance.chmod(0o750)
    clean_env.setenv("CONSOLE_INSTANCE_PATH", str(instance))
    create_app()
    assert mode(instance) == 0o750


def test_the_embedded_redis_keeps_its_files_private(tmp_path):
    from console.redis_server import ensure_embedded, stop_embedded

    instance = tmp_path / "instance"
    ensure_embedded(str(instance))
    try:
        assert mode(instance) == 0o700
        files = [p for p in instance.rglob("*") if p.name.startswith("redis.") and p.is_file()]
        assert files
        for path in files:
            assert mode(path) & 0o077 == 0, path
    finally:
        stop_embedded(str(instance))


# ---------------------------------------------------------------- gunicorn, as deployed


def raw_get(sock: socket.socket, path: str) -> bytes:
    """One request on an open connection; its whole answer, or b"" when the server closed."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_the_procfile_release_and_web_processes(tmp_path, backend, redis_url):
    """The Procfile's web line in a shell, as a platform runs it: secrets out of the access
    and error logs, headers, its control socket in the instance folder (not in the home
    folder, where every stack on the machine would share it), and a connection kept alive
    past the 2 s that the console's pollers wait between requests."""
    port = free_port()
    instance = tmp_path / "instance"
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env.update(
        REDIS_URL=redis_url,
        PORT=str(port),
        HOME=str(home),
        CONSOLE_INSTANCE_PATH=str(instance),
        DATABASE_URL=f"sqlite:///{instance / 'console.db'}",
        SECRET_KEY=secrets.token_hex(32),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    release = subprocess.run(
        ["bash", "-c", procfile()["release"]],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert release.returncode == 0, release.stdout + release.stderr
    assert "No users yet: set CONSOLE_ADMIN_EMAIL" in release.stdout
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["bash", "-c", procfile()["web"]],
            env=env,
            cwd=tmp_path,  # not the checkout: the settings come from the installed package
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def listening():
            try:  # a list: an answer of 503 (no worker runs here) is false
                return [requests.get(f"{base}/healthz", timeout=2)]
            except requests.RequestException:
                return None

        try:
            (health,) = wait_for(listening, 60, 0.3, message="gunicorn")
        except AssertionError:
            raise AssertionError(log_path.read_text()) from None
        assert_security_headers(health)
        assert health.headers["Strict-Transport-Security"] == "max-age=31536000"
        requests.get(f"{base}/flow/resume/LINKTOKEN111", timeout=5)
        requests.post(f"{base}/flow/cancel/LINKTOKEN222?x=1", json={}, timeout=5)
        requests.post(f"{base}/hooks/signup/HOOKSECRET333", json={}, timeout=5)
        requests.get(
            f"{base}/login", headers={"Referer": f"{base}/flow/resume/LINKTOKEN444"}, timeout=5
        )

        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert raw_get(sock, "/healthz").startswith(b"HTTP/1.1")
            time.sleep(3)
            again = raw_get(sock, "/healthz")
            assert again.startswith(b"HTTP/1.1"), again  # not closed after gunicorn's 2 s

        def logged():
            text = log_path.read_text()
            return text if text.count("/flow/") + text.count("/hooks/") >= 4 else None

        text = wait_for(logged, 10, 0.2, message="the access log\n" + log_path.read_text())
        assert "/flow/resume/[redacted] HTTP/1.1" in text
        assert "/flow/cancel/[redacted]?x=1 HTTP/1.1" in text
        assert "/hooks/signup/[redacted] HTTP/1.1" in text
        assert f'"{base}/flow/resume/[redacted]"' in text  # the referrer
        assert not re.search(r"LINKTOKEN|HOOKSECRET", text), text

        control = instance / "gunicorn.ctl"
        assert control.is_socket() and mode(control) == 0o600
        assert mode(instance) == 0o700 and mode(instance / "console.db") == 0o600
        assert not list(home.rglob("*")), list(home.rglob("*"))
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    assert not (instance / "gunicorn.ctl").exists()
