"""Login, home (the Tasks page) and the run page."""

from __future__ import annotations

import re

from console import runs as domain
from console.auth import create_user


def log_in(client, email, password="s3cret-pass"):
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def test_run_page_shows_steps_output_and_logs(app, client, define, work):
    create_user("viewer@example.com", "viewer", "s3cret-pass")
    wf = define("page", [("greet", "def run(ctx):\n    print('hi there')\n    return {'ok': 1}")])
    run, _ = domain.start_run(wf, {"who": "x"})
    work()
    assert client.get(f"/runs/{run.id}").status_code == 302  # login first
    log_in(client, "viewer@example.com")
    html = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert "completed" in html and "greet" in html and "hi there" in html
    assert "&#34;ok&#34;: 1" in html or '"ok": 1' in html
    assert client.get("/runs/01nosuchrun0000000000000000").status_code == 404


def test_home_is_the_tasks_page_with_counts(app, client, define, work):
    create_user("viewer@example.com", "viewer", "s3cret-pass")
    wf = define("count", [("a", "def run(ctx):\n    return 1")])
    domain.start_run(wf, {})
    work()
    log_in(client, "viewer@example.com")
    home = client.get("/")
    assert home.status_code == 302 and home.headers["Location"].endswith("/tasks")
    html = client.get(home.headers["Location"]).get_data(as_text=True)
    assert "status-completed" in html and re.search(r"completed</span> <strong>1</strong>", html)
