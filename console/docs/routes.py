"""``/docs/<page>``: one page of ``docs/`` rendered from Markdown (the files are the project's
own, so their HTML is trusted; links between pages are rewritten to these routes)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import markdown
from flask import abort, render_template, url_for
from markupsafe import Markup

from ..auth import role
from . import bp

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
PAGE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")
# A link to another page of docs/ (``links.md#answers``), as Markdown renders it.
DOC_LINK_RE = re.compile(r'href="([a-z][a-z0-9_-]*)\.md(#[^"]*)?"')
# A link out of docs/ (the repository's README): plain text here, where there is no such page.
OUTSIDE_LINK_RE = re.compile(r'<a href="\.\./[^"]*">(.*?)</a>')


def slug(heading: str, separator: str = "-") -> str:
    """The anchor a heading gets, the same as on a code host's rendering of the file, so that
    ``page.md#anchor`` links work in both places."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", separator)


@lru_cache(maxsize=32)
def render(page: str, mtime: float) -> tuple[str, str]:
    """The page's title and HTML (cached per file version)."""
    text = (DOCS / f"{page}.md").read_text(encoding="utf-8")
    converter = markdown.Markdown(
        extensions=["tables", "fenced_code", "toc"],
        extension_configs={"toc": {"slugify": slug}},
    )
    html = converter.convert(text)
    html = DOC_LINK_RE.sub(
        lambda m: f'href="{url_for("docs.page", page=m.group(1))}{m.group(2) or ""}"', html
    )
    html = html.replace('href="README.md', f'href="{url_for("docs.page", page="README")}')
    html = OUTSIDE_LINK_RE.sub(r"\1", html)
    title = next((t["name"] for t in converter.toc_tokens), page)  # type: ignore[attr-defined]
    return str(title), html


def pages() -> list[tuple[str, str]]:
    """Every page as (name, title), the index first."""
    names = sorted(p.stem for p in DOCS.glob("*.md") if p.stem != "README")
    return [(name, render(name, (DOCS / f"{name}.md").stat().st_mtime)[0]) for name in names]


@bp.get("/", defaults={"page": "README"})
@bp.get("/<page>")
@role("viewer")
def page(page: str) -> Any:
    path = DOCS / f"{page}.md"
    if not (page == "README" or PAGE_RE.match(page)) or not path.is_file():
        abort(404)
    title, html = render(page, path.stat().st_mtime)
    return render_template(
        "docs/page.html", title=title, body=Markup(html), page=page, pages=pages()
    )
