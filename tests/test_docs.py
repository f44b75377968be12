"""The user documentation in docs/ stays true to the code: its links resolve, and every
setting, command and API route that exists is described there."""

from __future__ import annotations

import re
from importlib.metadata import distribution
from pathlib import Path

import click
from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE_RE = re.compile(r"^```.*?^```", re.M | re.S)


def read(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE_RE.sub("", read(page))  # "# comment" lines in code blocks are not headings
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_docs_exist_and_the_index_lists_every_page():
    names = {p.name for p in PAGES}
    assert {"README.md", "steps.md", "runs.md", "links.md", "api.md", "definitions.md"} <= names
    assert {"commands.md", "security.md"} <= names
    index = read(DOCS / "README.md")
    missing = [n for n in names - {"README.md"} if f"]({n})" not in index]
    assert not missing, f"docs/README.md does not list {missing}"


def test_every_relative_link_and_anchor_resolves():
    bad = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", FENCE_RE.sub("", read(page))):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                bad.append(f"{page.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                bad.append(f"{page.name}: {target} (no such heading)")
    assert not bad, bad


def test_docs_stand_on_their_own():
    # A clone of the repository has only docs/: nothing may send a reader elsewhere.
    for page in PAGES:
        text = read(page)
        assert "SPEC" not in text, page.name
        assert "../shared" not in text, page.name


def test_every_setting_is_documented():
    sources = (ROOT / "console" / "config.py").read_text() + (
        ROOT / "console" / "__init__.py"
    ).read_text()
    names = set(
        re.findall(r'(?:os\.environ\.get|env_int|env_float|env_bool)\(\s*"([A-Z_]+)"', sources)
    )
    assert {"DATABASE_URL", "SECRET_KEY", "MAIL_SERVER", "CONSOLE_INSTANCE_PATH"} <= names
    commands = read(DOCS / "commands.md")
    missing = sorted(n for n in names if f"`{n}`" not in commands)
    assert not missing, f"docs/commands.md does not describe {missing}"


def console_commands(app: Flask) -> dict[str, click.Command]:
    """The app's commands and the console's plugin commands (``workers.cli``, registered as
    this project's ``flask.commands`` entry points); not Flask's own nor other packages'."""
    commands = dict(app.cli.commands)  # type: ignore[attr-defined]
    for entry in distribution("workflow-console").entry_points:
        if entry.group == "flask.commands":
            commands[entry.name] = entry.load()
    assert {"worker", "scheduler", "up", "users", "runs"} <= set(commands)
    return commands


def test_every_command_is_documented(app: Flask):
    commands = read(DOCS / "commands.md")
    missing = []
    for name, command in console_commands(app).items():
        if isinstance(command, click.Group):
            if name == "db":  # Flask-Migrate's own group: documented as a whole
                if "flask db upgrade" not in commands:
                    missing.append("flask db upgrade")
                continue
            for sub, subcommand in command.commands.items():
                pattern = rf"flask {name} [^|\n]*\b{re.escape(sub)}\b"
                if not subcommand.hidden and not re.search(pattern, commands):
                    missing.append(f"flask {name} {sub}")
        elif f"flask {name}" not in commands:
            missing.append(f"flask {name}")
    assert not missing, f"docs/commands.md does not describe {missing}"


def test_every_api_route_is_documented(app: Flask):
    api = re.sub(r"<[^>]+>", "<>", read(DOCS / "api.md"))
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        paths = [rule.rule]
        if "<action>" in rule.rule:  # one route for the three operator actions
            paths = [rule.rule.replace("<action>", a) for a in ("pause", "resume", "cancel")]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            for path in paths:
                shown = re.sub(r"<[^>]+>", "<>", path)
                if not re.search(rf"{method} {re.escape(shown)}(?![\w/<])", api):
                    missing.append(f"{method} {path}")
    assert not missing, f"docs/api.md does not describe {missing}"


def test_the_console_serves_every_page_with_working_links(app, client, auth):
    """``/docs/<page>`` renders docs/ for logged-in users; links between pages and their
    anchors lead to pages and headings that exist."""
    assert client.get("/docs/").status_code == 302  # login first
    auth.login("viewer", "reader@example.com")
    index = client.get("/docs/").get_data(as_text=True)
    for page in PAGES:
        name = page.stem
        html = client.get("/docs/" if name == "README" else f"/docs/{name}").get_data(as_text=True)
        assert "<h1" in html, name
        for target, anchor in re.findall(r'href="/docs/([a-z_-]*)(?:#([^"]*))?"', html):
            linked = client.get(f"/docs/{target}")
            assert linked.status_code == 200, (name, target)
            if anchor:
                assert f'id="{anchor}"' in linked.get_data(as_text=True), (name, target, anchor)
        assert not re.search(r'href="[^"]*\.md', html), name
    assert 'href="/docs/steps"' in index
    assert client.get("/docs/nope").status_code == 404
    assert client.get("/docs/..%2Fconsole").status_code == 404


def test_no_page_message_or_comment_points_outside_the_repository():
    """docs/ is the product's documentation: nothing in the code, pages or README sends a
    reader to a contract that a clone of this repository does not hold."""
    places = [ROOT / "README.md", ROOT / "bench" / "README.md"]
    for folder in ("console", "workers", "templates", "bench", "tests"):
        places += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".html", ".md")]
    places += [p for p in (ROOT / "static").glob("*.*") if p.suffix in (".js", ".css")]
    here = Path(__file__).resolve()
    bad = [
        str(p.relative_to(ROOT))
        for p in places
        if p.resolve() != here and re.search(r"\bSPEC\b|\.\./shared", p.read_text("utf-8"))
    ]
    assert not bad, bad
