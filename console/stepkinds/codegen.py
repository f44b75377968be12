"""The code writers of the step kinds: a checked config → readable Python defining ``run(ctx)``,
using only the snippet API (docs/) and the standard library.

The helper code the generated steps carry (the ``{{ reference }}`` resolver, the http-only
opener, the request, check and notify helpers) lives in ``snippets/*.py`` as real modules;
this module copies their text, so "Convert to code" leaves an ordinary step that works on
its own.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from .checks import describe, parse_body, parse_headers, parse_statuses
from .references import references

SNIPPETS = Path(__file__).parent / "snippets"
SNIPPET_MARKER = "# -------------------- snippet: the code below is copied into steps\n"


def _snippet(name: str) -> str:
    """The code below the marker of ``snippets/<name>.py``."""
    _, marker, code = (
        (SNIPPETS / f"{name}.py").read_text(encoding="utf-8").partition(SNIPPET_MARKER)
    )
    if not marker:
        raise RuntimeError(f"snippets/{name}.py has no snippet marker line")
    return code.strip("\n") + "\n"


def helper_functions() -> frozenset[str]:
    """The names of the functions generated steps carry from ``snippets/``: their frames in a
    traceback are the console's code, not the person's (the run page folds them away)."""
    names = set()
    for path in SNIPPETS.glob("*.py"):
        if path.name != "__init__.py":
            tree = ast.parse(_snippet(path.stem))
            names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    return frozenset(names)


def python_literal(value: Any) -> str:
    """A JSON value as Python source, strings in double quotes (as people write them)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{python_literal(str(k))}: {python_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return repr(value)


def _literal(value: Any) -> str:
    """A Python literal for a setting, resolved at run time when it holds a reference."""
    text = python_literal(value)
    return f"resolve(ctx, {text})" if references(value) else text


def _uses_references(values: dict[str, Any], *keys: str) -> bool:
    return any(references(values[k]) for k in keys)


RESOLVER = "\n" + _snippet("resolver")


def _module(imports: list[str], body: str, helpers: str = "", resolver: bool = False) -> str:
    names = set(imports) | ({"json", "re"} if resolver else set())
    head = "".join(f"import {name}\n" for name in sorted(names))
    parts = [head + "\n\n" if head else "", body.strip("\n") + "\n"]
    if helpers:
        parts.append("\n\n" + helpers.strip("\n") + "\n")
    if resolver:
        parts.append("\n\n" + RESOLVER.strip("\n") + "\n")
    return "".join(parts)


def generate_approval(v: dict[str, Any]) -> str:
    seconds = v["timeout"]
    body = f"""
def run(ctx):
    \"\"\"Approval by email: the run waits for the Approve or Reject link.\"\"\"
    recipients = {_literal(v["recipients"].strip())}
    subject = {_literal(v["subject"])}
    message = {_literal(v["message"])}
    # The run suspends when this step returns. Approve (the resume link) continues the run
    # and what it was sent becomes this step's resume_data; Reject (the cancel link) cancels
    # the run. Without an answer the run continues after the timeout with timed_out = True.
    links = ctx.flow.suspend(timeout={seconds:g})  # {describe(seconds)}
    ctx.send_email(
        to=recipients,
        subject=subject,
        text=f"{{message}}\\n\\nApprove: {{links.resume_url}}\\nReject:  {{links.cancel_url}}\\n",
    )
    ctx.logger.info("approval requested", recipients=recipients)
    return {{"asked": recipients}}
"""
    return _module([], body, resolver=_uses_references(v, "recipients", "subject", "message"))


def generate_email(v: dict[str, Any]) -> str:
    html = _literal(v["html"]) if v["html"].strip() else "None"
    body = f"""
def run(ctx):
    \"\"\"Send an email (kept in the Outbox; sent at most once, even when replayed).\"\"\"
    to = {_literal(v["to"].strip())}
    subject = {_literal(v["subject"])}
    ctx.send_email(
        to=to,
        subject=subject,
        text={_literal(v["text"])},
        html={html},
    )
    return {{"sent_to": to, "subject": subject}}
"""
    return _module([], body, resolver=_uses_references(v, "to", "subject", "text", "html"))


# Only http and https are fetched (see snippets/http_only.py).
HTTP_ONLY = "\n\n" + _snippet("http_only")
HTTP_HELPERS = _snippet("http_helpers")


def generate_http(v: dict[str, Any]) -> str:
    method = v["method"]
    headers = parse_headers(v["headers"])
    kind, payload = parse_body(v["body"])
    if kind == "none" or method in ("GET", "HEAD"):
        payload = None
    statuses = parse_statuses(v["expected_status"])
    accepted = ", ".join(statuses) if statuses else "any status"
    body = f"""
def run(ctx):
    \"\"\"HTTP request: {method} the URL; the answer is this step's output.\"\"\"
    url = {_literal(v["url"])}
    headers = {_literal(headers)}
    body = {_literal(payload)}
    accepted = {python_literal(statuses)}  # {accepted}; any other status fails the step
    timeout = {v["timeout"]:g}  # seconds
    # Recorded by its key: a replay or a retry after a good answer does not send it again.
    response = ctx.task("request", send_request, "{method}", url, headers, body, timeout, accepted)
    ctx.logger.info("HTTP {method}", url=url, status=response["status"])
    return response
"""
    uses = any(references(x) for x in (v["url"], headers, payload))
    helpers = HTTP_HELPERS + HTTP_ONLY
    return _module(["json", "urllib.error", "urllib.request"], body, helpers, resolver=uses)


def generate_delay(v: dict[str, Any]) -> str:
    seconds = v["duration"]
    body = f"""
def run(ctx):
    \"\"\"Delay: the run sleeps (no worker is busy) and continues when the time is up.\"\"\"
    ctx.wait("delay", {seconds:g})  # {describe(seconds)}
    return {{"waited_seconds": {seconds:g}}}
"""
    return _module([], body)


POLL_HELPERS = _snippet("poll_helpers")


def generate_poll(v: dict[str, Any]) -> str:
    seconds = v["interval"]
    retries = v["max_retries"]
    headers = parse_headers(v["headers"])
    body = f"""
def run(ctx):
    \"\"\"Poll until done: check the URL; while the condition is false, check again later.\"\"\"
    url = {_literal(v["url"])}
    headers = {_literal(headers)}
    check_number = ctx.run.runs  # 1, then +1 on each re-check
    try:
        response, status = ctx.task(f"check_{{check_number}}", check, url, headers)
    except OSError as error:  # unreachable or an HTTP error: counts as a check, try again
        ctx.logger.warning("the check failed", error=str(error), check=check_number)
        response, status = None, None
    else:
        ctx.logger.info("checked", status=status, check=check_number)
        if done(ctx, response, status):
            return {{"done": True, "checks": check_number, "response": response}}
    if check_number > {retries}:
        raise TimeoutError(
            f"{{url}} is still not done after {{check_number}} checks "
            f"(the last answer: {{str(response)[:300]}})"
        )
    # This step executes again after the interval, with ctx.run.runs + 1.
    ctx.flow.rerun({seconds:g}, context={{"check": check_number}}, max_retries={retries})
    return {{"done": False, "checks": check_number, "response": response}}
"""
    condition = f"""

def done(ctx, response, status):
    \"\"\"Done when this holds (response: the answer's JSON or text; status: HTTP).\"\"\"
    return (
        {v["condition"]}
    )
"""
    uses = bool(references(v["url"])) or bool(references(headers))
    helpers = POLL_HELPERS + condition + HTTP_ONLY
    return _module(["json", "urllib.request"], body, helpers, resolver=uses)


CALLBACK_HELPERS = _snippet("callback_helpers")


def generate_callback(v: dict[str, Any]) -> str:
    seconds = v["timeout"]
    notify_url = v["notify_url"].strip()
    notify = ""
    if notify_url:
        notify = f"""
    notify_url = {_literal(notify_url)}
    # Recorded by its key: a replay does not notify twice.
    ctx.task("notify", notify, notify_url, announced, ctx.run.id)"""
    body = f"""
def run(ctx):
    \"\"\"Wait for callback: the run waits until a request to resume_url (or the timeout).\"\"\"
    # The run suspends when this step returns. A POST to resume_url continues the run and its
    # JSON body (or form fields, or text) becomes this step's resume_data; cancel_url cancels
    # the run. Without a call the run continues after the timeout with timed_out = True.
    links = ctx.flow.suspend(timeout={seconds:g})  # {describe(seconds)}
    announced = {{"resume_url": links.resume_url, "cancel_url": links.cancel_url}}
    ctx.logger.info("waiting for a callback", **announced){notify}
    return {{"waiting_seconds": {seconds:g}, "notified": {bool(notify_url)!r}}}
"""
    if not notify_url:
        return _module([], body)
    return _module(
        ["json", "urllib.request"],
        body,
        CALLBACK_HELPERS + HTTP_ONLY,
        resolver=bool(references(notify_url)),
    )
