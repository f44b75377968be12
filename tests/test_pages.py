"""Login, home (the Tasks page) and the run page."""

from __future__ import annotations

import re

from console import runs as domain


def test_run_page_shows_steps_output_and_logs(app, client, auth, define, work):
    wf = define("page", [("greet", "def run(ctx):\n    print('hi there')\n    return {'ok': 1}")])
    run, _ = domain.start_run(wf, {"who": "x"})
    work()
    assert client.get(f"/runs/{run.id}").status_code == 302  # login first
    auth.login("viewer")
    html = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert "completed" in html and "greet" in html and "hi there" in html
    assert "&#34;ok&#34;: 1" in html or '"ok": 1' in html
    assert client.get("/runs/01nosuchrun0000000000000000").status_code == 404


def test_home_is_the_tasks_page_with_counts(app, client, auth, define, work):
    wf = define("count", [("a", "def run(ctx):\n    return 1")])
    domain.start_run(wf, {})
    work()
    auth.login("viewer")
    home = client.get("/")
    assert home.status_code == 302 and home.headers["Location"].endswith("/tasks")
    html = client.get(home.headers["Location"]).get_data(as_text=True)
    assert "status-completed" in html and re.search(r"completed</span> <strong>1</strong>", html)


def test_every_page_links_a_favicon_that_is_served(app, client, auth):
    auth.login("viewer")
    html = client.get("/tasks").get_data(as_text=True)
    href = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)"', html).group(1)
    with client.get(href) as icon:  # a static file: closed when read
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
        assert b"<svg" in icon.data
    auth.logout()
    old_path = client.get("/favicon.ico")  # asked for without a login, as browsers do
    assert old_path.status_code == 301 and old_path.headers["Location"].endswith(href)
