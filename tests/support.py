"""Helpers shared by the API, definition and CLI tests."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient


def code(body: str = "return 1") -> str:
    """A step's code: ``def run(ctx):`` with ``body`` (one or more lines) indented."""
    lines = body.splitlines() or ["pass"]
    return "def run(ctx):\n" + "".join(f"    {line}\n" for line in lines)


def step(name: str = "one", body: str = "return 1", **settings: Any) -> dict[str, Any]:
    return {"name": name, "code": code(body), **settings}


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    if match is None:
        raise AssertionError(f"no csrf_token in the page:\n{html[:2000]}")
    return match.group(1)


def log_in(client: FlaskClient, email: str, password: str) -> str:
    """Log in through the login form; returns the CSRF token of the session."""
    page = client.get("/login")
    if page.status_code != 200:
        raise AssertionError(f"GET /login answered {page.status_code}")
    token = csrf_token(page.get_data(as_text=True))
    answer = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    if answer.status_code != 302:
        raise AssertionError(
            f"login failed: {answer.status_code} {answer.get_data(as_text=True)[:2000]}"
        )
    return token


def details_by_path(response: Any) -> dict[str, str]:
    """The ``details`` of an error answer as ``{path: message}`` (each path once)."""
    details = response.json["details"]
    for detail in details:
        if set(detail) != {"path", "message"}:
            raise AssertionError(f"a detail must have exactly path and message: {detail}")
        if not isinstance(detail["path"], str) or not isinstance(detail["message"], str):
            raise AssertionError(f"path and message must be strings: {detail}")
        if not detail["message"]:
            raise AssertionError(f"empty message: {detail}")
    return {d["path"]: d["message"] for d in details}


# A statement run by another process on the app's database, for migration tests (the test
# process's own engine has the models' schema, not the one of an older migration).
SQL_SCRIPT = """
import os, sys
from sqlalchemy import create_engine, text
from console.config import database_url
engine = create_engine(database_url(os.environ["CONSOLE_INSTANCE_PATH"]))
with engine.begin() as conn:
    result = conn.execute(text(sys.argv[1]))
    if result.returns_rows:
        print([row[0] for row in result])
"""


def run_sql(app_env: dict[str, str], *statements: str) -> str:
    """Run each statement in its own process and transaction; the last one's rows, printed."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = ""
    for statement in statements:
        done = subprocess.run(
            [sys.executable, "-c", SQL_SCRIPT, statement],
            env=dict(os.environ, **app_env),
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout.strip()
    return out
