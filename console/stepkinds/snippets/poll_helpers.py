"""The check of the poll kind (its ``done`` condition is written from the config)."""

import json
import urllib.request

from .http_only import open_url

# -------------------- snippet: the code below is copied into steps


def check(url, headers):
    """GET the URL: (the answer's JSON, or its text; the HTTP status)."""
    request = urllib.request.Request(url, headers=headers, method="GET")
    with open_url(request, 30) as answer:
        text = answer.read().decode("utf-8", errors="replace")
        try:
            return json.loads(text), answer.status
        except ValueError:
            return text, answer.status
