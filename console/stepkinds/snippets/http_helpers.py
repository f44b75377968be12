"""The request of the HTTP request kind."""

import json
import urllib.error
import urllib.request

from .http_only import open_url

# -------------------- snippet: the code below is copied into steps


def send_request(method, url, headers, body, timeout, accepted):
    """One HTTP request; the answer as {"status", "headers", "json" or "text"}.

    An unexpected status raises here, so the answer is not recorded and a retry of the
    step sends the request again.
    """
    headers = dict(headers)
    data = None
    if isinstance(body, str):
        data = body.encode()
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    elif body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with open_url(request, timeout) as response:
            result = answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:  # 4xx and 5xx still have a status and a body
        result = answer(error.code, error.headers, error.read())
    if not expected(result["status"], accepted):
        shown = str(result.get("json", result.get("text")))[:500]
        raise RuntimeError(f"{method} {url} answered HTTP {result['status']}: {shown}")
    return result


def answer(status, headers, raw):
    text = raw.decode("utf-8", errors="replace")
    result = {"status": status, "headers": dict(headers.items())}
    try:
        result["json"] = json.loads(text)
    except ValueError:
        result["text"] = text
    return result


def expected(status, accepted):
    """Whether a status matches one of "200", "2xx"... (an empty list accepts any)."""
    code = str(status)
    return not accepted or any(
        code == item or (item.endswith("xx") and code[0] == item[0]) for item in accepted
    )
