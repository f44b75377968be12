"""Showing an email's plain text in a page: escaped, with its web links clickable."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

URL_RE = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
# Punctuation that ends a sentence rather than the link ("see https://x.example/a.").
TRAILING = ".,;:!?'\""


def _split_trailing(url: str) -> tuple[str, str]:
    tail = ""
    while url:
        last = url[-1]
        unbalanced_paren = last == ")" and url.count("(") < url.count(")")
        if last not in TRAILING and not unbalanced_paren:
            break
        url, tail = url[:-1], last + tail
    return url, tail


def linkify(text: str | None) -> Markup:
    """Escape ``text`` and turn each http(s) URL in it into a link."""
    text = text or ""
    parts: list[str] = []
    position = 0
    for match in URL_RE.finditer(text):
        url, tail = _split_trailing(match.group(0))
        parts.append(escape(text[position : match.start()]))
        if url.partition("://")[2]:
            parts.append(Markup('<a href="{0}" rel="noopener noreferrer">{0}</a>').format(url))
        else:
            parts.append(escape(url))
        parts.append(escape(tail))
        position = match.end()
    parts.append(escape(text[position:]))
    return Markup("").join(parts)
