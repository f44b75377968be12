"""Built-in step kinds (low-code steps): a form of settings that compiles to a step's code.

Each kind is a list of settings (the config keys, their form fields and their checks) and a
``compile`` that turns a valid config into readable Python defining ``run(ctx)``, using only the
snippet API of SPEC §2 and the standard library. The same checks serve the editor's forms and
the definitions of the API and the CLI (``console.definitions._normalise_step``), so a config is
judged the same way wherever it comes from.

Settings may reference the run with ``{{ input.email }}`` or ``{{ steps.fetch.output.user.id }}``
(also ``resume_data`` / ``timed_out`` of an earlier step), alone or inside longer text. A value
that is exactly one reference becomes that value (any JSON type); inside text it is replaced by
its text. The generated code carries its own small resolver, so "Convert to code" leaves an
ordinary step that works on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask_wtf import FlaskForm
from wtforms import Field, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

CODE_LABEL = "Python code"

# ----------------------------------------------------------------------------- references

REFERENCE_RE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_SEGMENT = r"[^\s{}.]+"
_STEP_NAME = r"[a-z][a-z0-9_]{0,62}"
VALID_REFERENCE_RE = re.compile(
    rf"^(input(\.{_SEGMENT})*"
    rf"|steps\.{_STEP_NAME}\.(output(\.{_SEGMENT})*|resume_data(\.{_SEGMENT})*|timed_out))$"
)


def references(value: Any) -> list[str]:
    """Every ``{{ reference }}`` in a setting (strings, and strings inside lists and dicts)."""
    if isinstance(value, str):
        return REFERENCE_RE.findall(value)
    if isinstance(value, dict):
        return [r for v in value.values() for r in references(v)]
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    return []


def reference_problem(value: Any) -> str | None:
    for ref in references(value):
        if not VALID_REFERENCE_RE.match(ref):
            return (
                f"{{{{ {ref} }}}} is not a reference: use {{{{ input.<field> }}}} or "
                "{{ steps.<step>.output.<field> }} (or .resume_data, .timed_out)"
            )
    return None


def step_reference_problems(config: Any, earlier: list[str]) -> list[tuple[str, str]]:
    """(key, message) for each ``{{ steps.<name>... }}`` in a config that names no step before
    this one: a later or unknown step has no output when this step runs."""
    if not isinstance(config, dict):
        return []
    found = []
    for key, value in config.items():
        for ref in references(value):
            parts = ref.split(".")
            if parts[0] == "steps" and len(parts) > 1 and parts[1] not in earlier:
                before = ", ".join(earlier) if earlier else "none, this is the first step"
                message = f"{{{{ {ref} }}}} names no earlier step (steps before this one: {before})"
                found.append((key, message))
                break
    return found


# ---------------------------------------------------------------------- setting checks
#
# A check takes a config value (from JSON or from a form) and returns the normalised value or
# raises ValueError with a message for the user.

Check = Callable[[Any], Any]
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
UNITS = {
    "": 1,
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
EMAIL_RE = re.compile(r"^[^@\s,;]+@[^@\s,;]+$")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
STATUS_ITEM_RE = re.compile(r"^[1-5]([0-9][0-9]|xx)$")


def _text(value: Any, *, required: bool, max_length: int = 10_000) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError("must be text")
    if required and not value.strip():
        raise ValueError("is required")
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters")
    problem = reference_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def required_text(max_length: int = 10_000) -> Check:
    return lambda value: _text(value, required=True, max_length=max_length)


def optional_text(max_length: int = 100_000) -> Check:
    return lambda value: _text(value, required=False, max_length=max_length)


def check_duration(minimum: float, maximum: float) -> Check:
    """Seconds as a number, or text such as ``90``, ``30s``, ``10 minutes``, ``2h``, ``7d``."""

    def check(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("must be a duration such as 30s, 10m, 2h or 7d")
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            match = DURATION_RE.match(str(value or ""))
            unit = match.group(2).lower() if match else None
            if match is None or unit not in UNITS:
                raise ValueError("must be a duration such as 30s, 10m, 2h or 7d")
            seconds = float(match.group(1)) * UNITS[unit]
        if not minimum <= seconds <= maximum:
            raise ValueError(f"must be between {describe(minimum)} and {describe(maximum)}")
        return seconds

    return check


def describe(seconds: float) -> str:
    """``604800`` → ``7 days``: the largest unit that divides it."""
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


def check_integer(minimum: int, maximum: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        return value

    return check


def check_recipients(value: Any) -> str:
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    text = _text(value, required=True, max_length=2000)
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        if REFERENCE_RE.fullmatch(part):
            continue
        if not EMAIL_RE.match(part):
            raise ValueError(f"{part!r} is not an email address (name@example.com)")
    return text


def check_url(value: Any) -> str:
    text = _text(value, required=True, max_length=2000).strip()
    if text.startswith("{{"):
        return text  # the URL comes from the run; checked when the step runs
    parts = urlsplit(REFERENCE_RE.sub("x", text))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL (or a {{ reference }})")
    return text


def check_method(value: Any) -> str:
    method = str(value or "").upper()
    if method not in METHODS:
        raise ValueError(f"must be one of {', '.join(METHODS)}")
    return method


def parse_headers(value: Any) -> dict[str, str]:
    """A JSON object, or ``Key: value`` lines."""
    if value is None or value == "":
        return {}
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"is not a JSON object: {exc}") from None
    if isinstance(value, dict):
        if not all(isinstance(v, str | int | float) for v in value.values()):
            raise ValueError("header values must be text")
        headers = {str(k): str(v) for k, v in value.items()}
    elif isinstance(value, str):
        headers = {}
        for number, line in enumerate(value.splitlines(), 1):
            if not line.strip():
                continue
            name, colon, content = line.partition(":")
            if not colon or not name.strip():
                raise ValueError(f"line {number}: write a JSON object or Key: value lines")
            headers[name.strip()] = content.strip()
    else:
        raise ValueError("must be a JSON object or Key: value lines")
    for name in headers:
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
            raise ValueError(f"{name!r} is not a header name")
    problem = reference_problem(headers)
    if problem:
        raise ValueError(problem)
    return headers


def check_headers(value: Any) -> Any:
    parse_headers(value)
    return value if value is not None else ""


def parse_body(value: Any) -> tuple[str, Any]:
    """``("json", value)`` for JSON (or a JSON value given directly), ``("text", s)`` otherwise,
    ``("none", None)`` when empty."""
    if value is None or value == "":
        return "none", None
    if not isinstance(value, str):
        return "json", value
    stripped = value.strip()
    if stripped[:1] in ("{", "["):
        try:
            return "json", json.loads(stripped)
        except ValueError as exc:
            raise ValueError(
                f"looks like JSON but is not valid: {exc} (a {{{{ reference }}}} inside JSON "
                'goes in quotes: "{{ input.id }}")'
            ) from None
    return "text", value


def check_body(value: Any) -> Any:
    _, parsed = parse_body(value)
    if isinstance(value, str):
        _text(value, required=False, max_length=100_000)
    problem = reference_problem(parsed)
    if problem:
        raise ValueError(problem)
    return value if value is not None else ""


def parse_statuses(value: Any) -> list[str]:
    """``2xx`` (the default), ``any``, or codes and classes: ``200, 404, 3xx``."""
    text = str(value if value is not None else "").strip().lower() or "2xx"
    if text == "any":
        return []
    items = [p.strip() for p in text.split(",") if p.strip()]
    for item in items:
        if not STATUS_ITEM_RE.match(item):
            raise ValueError(f"{item!r}: give status codes or classes (200, 404, 2xx) or any")
    return items


def check_statuses(value: Any) -> str:
    parse_statuses(value)
    return str(value if value is not None else "").strip() or "2xx"


def check_condition(value: Any) -> str:
    text = _text(value, required=True, max_length=2000).strip()
    if "\n" in text:
        raise ValueError("must be one expression on one line")
    try:
        compile(text, "<condition>", "eval")
    except SyntaxError as exc:
        raise ValueError(f"is not a Python expression: {exc.msg}") from None
    return text


# ------------------------------------------------------------------------------ the kinds


@dataclass(frozen=True)
class Setting:
    """One config key: its form field, starting value and check."""

    key: str
    label: str
    field: type[Field]
    default: Any
    check: Check
    help: str = ""
    placeholder: str = ""
    choices: tuple[str, ...] = ()
    # A definition file must give a required setting; the default only starts the form.
    required: bool = False


def _form_validator(check: Check) -> Callable[[Any, Any], None]:
    def validate(form: Any, form_field: Any) -> None:
        try:
            check(form_field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    return validate


def _build_form(name: str, settings: tuple[Setting, ...]) -> type[FlaskForm]:
    fields: dict[str, Any] = {}
    for s in settings:
        kwargs: dict[str, Any] = {
            "validators": [_form_validator(s.check)],
            "description": s.help,
            "default": s.default,
        }
        if s.placeholder:
            kwargs["render_kw"] = {"placeholder": s.placeholder}
        if s.choices:
            kwargs["choices"] = [SelectChoice(c, c) for c in s.choices]
        fields[s.key] = s.field(s.label, **kwargs)
    return type(name, (FlaskForm,), fields)


@dataclass(frozen=True)
class StepKind:
    name: str
    label: str
    summary: str
    settings: tuple[Setting, ...]
    generate: Callable[[dict[str, Any]], str]
    form_class: type[FlaskForm] = field(init=False)

    def __post_init__(self) -> None:
        title = self.name.capitalize()
        object.__setattr__(self, "form_class", _build_form(f"{title}StepForm", self.settings))

    def defaults(self) -> dict[str, Any]:
        return {s.key: s.default for s in self.settings}

    def problems(self, config: dict[str, Any]) -> list[tuple[str, str]]:
        found = [(key, "unknown setting") for key in sorted(set(config) - self.keys())]
        for s in self.settings:
            if s.required and s.key not in config:
                found.append((s.key, "is required"))
                continue
            try:
                s.check(config.get(s.key, s.default))
            except ValueError as exc:
                found.append((s.key, str(exc)))
        return found

    def keys(self) -> set[str]:
        return {s.key for s in self.settings}

    def compile(self, config: dict[str, Any]) -> str:
        """The code for a valid config (``compile_step`` checks it first)."""
        values = {s.key: s.check(config.get(s.key, s.default)) for s in self.settings}
        return self.generate(values)


# --------------------------------------------------------------------------- code writers


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


RESOLVER = '''
# {{ input.x }} and {{ steps.<step>.output.x }} in a setting are replaced by values of this run.
REFERENCE = re.compile(r"\\{\\{\\s*(.*?)\\s*\\}\\}")


def resolve(ctx, value):
    """The setting with its {{ references }} replaced (a lone reference keeps its type)."""
    if isinstance(value, dict):
        return {key: resolve(ctx, item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(ctx, item) for item in value]
    whole = REFERENCE.fullmatch(value.strip()) if isinstance(value, str) else None
    if whole:
        return lookup(ctx, whole.group(1))
    if not isinstance(value, str):
        return value

    def as_text(match):
        found = lookup(ctx, match.group(1))
        return found if isinstance(found, str) else json.dumps(found)

    return REFERENCE.sub(as_text, value)


def lookup(ctx, path):
    """The value of "input.a.b" or "steps.<step>.output.a.b" in this run."""
    root, *keys = path.split(".")
    if root == "input":
        value = ctx.input
    else:
        value = getattr(ctx.steps[keys[0]], keys[1])
        keys = keys[2:]
    for key in keys:
        try:
            value = value[int(key)] if isinstance(value, list) else value[key]
        except (KeyError, IndexError, TypeError, ValueError):
            raise LookupError(f"{{{{ {path} }}}}: there is no {key!r} in this run") from None
    return value
'''


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


# Only http and https are fetched: urllib would also open file: (the worker's own files, such
# as /proc/self/environ) and ftp: URLs, and a URL may come from a run's input.
HTTP_ONLY = '''

def only_http(request):
    """The request, if urllib sends it over http or https (never file:, ftp: or data:)."""
    if request.type not in ("http", "https"):
        raise ValueError(f"only http and https URLs are allowed: {request.full_url}")
    return request


class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to another http or https URL."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        only_http(urllib.request.Request(newurl))
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def open_url(request, timeout):
    """urllib.request.urlopen for http and https URLs only, redirects included."""
    opener = urllib.request.build_opener(HttpOnlyRedirects)
    return opener.open(only_http(request), timeout=timeout)
'''


HTTP_HELPERS = '''
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
'''


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


POLL_HELPERS = '''
def check(url, headers):
    """GET the URL: (the answer's JSON, or its text; the HTTP status)."""
    request = urllib.request.Request(url, headers=headers, method="GET")
    with open_url(request, 30) as answer:
        text = answer.read().decode("utf-8", errors="replace")
        try:
            return json.loads(text), answer.status
        except ValueError:
            return text, answer.status
'''


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


CALLBACK_HELPERS = '''
def notify(url, links, run_id):
    """POST the links as JSON to the service that will call back."""
    body = json.dumps({"run": run_id, **links}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with open_url(request, 30) as answer:
        return answer.status
'''


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


def check_optional_url(value: Any) -> str:
    if value is None or not str(value).strip():
        return ""
    return check_url(value)


KINDS: dict[str, StepKind] = {
    kind.name: kind
    for kind in (
        StepKind(
            name="approval",
            label="Approval by email",
            summary="Email Approve and Reject links and wait for an answer.",
            settings=(
                Setting(
                    "recipients",
                    "Recipients",
                    StringField,
                    "{{ input.approver }}",
                    check_recipients,
                    "Email addresses, separated by commas.",
                    "approver@example.com, {{ input.manager }}",
                    required=True,
                ),
                Setting(
                    "subject",
                    "Subject",
                    StringField,
                    "Approval needed",
                    required_text(500),
                    required=True,
                ),
                Setting(
                    "message",
                    "Message",
                    TextAreaField,
                    "Please approve or reject this request.",
                    required_text(),
                    "The Approve and Reject links are added below it.",
                    required=True,
                ),
                Setting(
                    "timeout",
                    "Expires after",
                    StringField,
                    "7d",
                    check_duration(1, 365 * 86400),
                    "Then the run continues with timed_out = True. Seconds, or 30m, 48h, 7d.",
                    "7d",
                ),
            ),
            generate=generate_approval,
        ),
        StepKind(
            name="email",
            label="Send email",
            summary="Send an email; with no mail server it is kept in the Outbox.",
            settings=(
                Setting(
                    "to",
                    "To",
                    StringField,
                    "{{ input.email }}",
                    check_recipients,
                    "Email addresses, separated by commas.",
                    "someone@example.com",
                    required=True,
                ),
                Setting(
                    "subject", "Subject", StringField, "Hello", required_text(500), required=True
                ),
                Setting("text", "Text", TextAreaField, "Hello!", required_text(), required=True),
                Setting(
                    "html",
                    "HTML (optional)",
                    TextAreaField,
                    "",
                    optional_text(),
                    "An HTML version of the text, for mail clients that show it.",
                ),
            ),
            generate=generate_email,
        ),
        StepKind(
            name="http",
            label="HTTP request",
            summary="Call a URL; the status and the answer become the output.",
            settings=(
                Setting(
                    "url",
                    "URL",
                    StringField,
                    "https://example.com/api",
                    check_url,
                    "",
                    "https://api.example.com/users/{{ input.user_id }}",
                    required=True,
                ),
                Setting("method", "Method", SelectField, "GET", check_method, choices=METHODS),
                Setting(
                    "headers",
                    "Headers",
                    TextAreaField,
                    "",
                    check_headers,
                    "A JSON object, or one Key: value per line.",
                    "Accept: application/json",
                ),
                Setting(
                    "body",
                    "Body",
                    TextAreaField,
                    "",
                    check_body,
                    "JSON (sent as application/json) or text. Not sent with GET or HEAD.",
                    '{"email": "{{ input.email }}"}',
                ),
                Setting(
                    "expected_status",
                    "Expected status",
                    StringField,
                    "2xx",
                    check_statuses,
                    "Any other status fails the step: codes or classes (200, 404, 2xx), or any.",
                    "2xx",
                ),
                Setting(
                    "timeout",
                    "Timeout (seconds)",
                    IntegerField,
                    30,
                    check_integer(1, 300),
                ),
            ),
            generate=generate_http,
        ),
        StepKind(
            name="delay",
            label="Delay",
            summary="Wait a while before the next step (the run sleeps).",
            settings=(
                Setting(
                    "duration",
                    "Wait for",
                    StringField,
                    "1h",
                    check_duration(1, 365 * 86400),
                    "Seconds, or 30s, 10m, 2h, 7d.",
                    "1h",
                    required=True,
                ),
            ),
            generate=generate_delay,
        ),
        StepKind(
            name="poll",
            label="Poll until done",
            summary="Check a URL every interval until a condition holds.",
            settings=(
                Setting(
                    "url",
                    "URL to check",
                    StringField,
                    "{{ steps.start.output.json.status_url }}",
                    check_url,
                    "Fetched with GET on each check.",
                    "https://api.example.com/jobs/{{ steps.start.output.json.id }}",
                    required=True,
                ),
                Setting(
                    "headers",
                    "Headers",
                    TextAreaField,
                    "",
                    check_headers,
                    "A JSON object, or one Key: value per line.",
                ),
                Setting(
                    "condition",
                    "Done when",
                    StringField,
                    'response["status"] == "done"',
                    check_condition,
                    "A Python expression: response is the answer's JSON (or text), "
                    "status its HTTP status.",
                    'response["status"] == "done"',
                    required=True,
                ),
                Setting(
                    "interval",
                    "Check every",
                    StringField,
                    "30s",
                    check_duration(0, 7 * 86400),
                    "Seconds, or 30s, 10m, 2h.",
                    "30s",
                ),
                Setting(
                    "max_retries",
                    "Re-checks before failing",
                    IntegerField,
                    20,
                    check_integer(0, 1000),
                ),
            ),
            generate=generate_poll,
        ),
        StepKind(
            name="callback",
            label="Wait for callback",
            summary="Wait until a service calls this step's resume URL.",
            settings=(
                Setting(
                    "timeout",
                    "Give up after",
                    StringField,
                    "1d",
                    check_duration(1, 365 * 86400),
                    "Then the run continues with timed_out = True. Seconds, or 30m, 2h, 1d.",
                    "1d",
                ),
                Setting(
                    "notify_url",
                    "Send the links to (optional)",
                    StringField,
                    "",
                    check_optional_url,
                    "POSTed {run, resume_url, cancel_url} as JSON; the links are logged too.",
                    "https://service.example.com/callbacks",
                ),
            ),
            generate=generate_callback,
        ),
    )
}


# ------------------------------------------------------------------------ the contract


def config_problems(kind: str, config: Any) -> list[tuple[str, str]]:
    """``[(config key or "", message)]`` for a step of this kind; empty when it is valid."""
    step_kind = KINDS.get(kind) if isinstance(kind, str) else None
    if step_kind is None:
        return [("", f"unknown step kind {kind!r} (known: {', '.join(KINDS)})")]
    if not isinstance(config, dict):
        return [("", "config must be an object")]
    return step_kind.problems(config)


def normalise_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config with every setting present (defaults for the missing ones)."""
    return {**KINDS[kind].defaults(), **config}


def compile_step(kind: str, config: dict[str, Any]) -> str:
    """The generated code; raises ``ValueError`` listing the problems of an invalid config."""
    problems = config_problems(kind, config)
    if problems:
        raise ValueError("; ".join(f"{key}: {text}" if key else text for key, text in problems))
    return KINDS[kind].compile(config)


def form_for(
    kind: str, *, formdata: Any = None, data: dict[str, Any] | None = None, prefix: str = ""
) -> FlaskForm:
    """The kind's config form, filled from a request's form data or from a config."""
    step_kind = KINDS[kind]
    values = normalise_config(kind, data or {})
    return step_kind.form_class(formdata=formdata, data=values, prefix=prefix)


def config_from_form(kind: str, form: FlaskForm) -> dict[str, Any]:
    """The JSON-able config of a (validated) form, keyed by setting."""
    config: dict[str, Any] = {}
    for s in KINDS[kind].settings:
        value = form[s.key].data
        config[s.key] = "" if value is None and s.field is not IntegerField else value
    return config
