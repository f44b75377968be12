"""The built-in step kinds (low-code steps): their settings, the ``KINDS`` table, and the
contract the editor, the API and the CLI use (``config_problems``, ``normalise_config``,
``generate_code``).

Each kind is a list of settings (the config keys, their form fields and their checks) and a
``generate`` (``codegen.py``) that turns a valid config into readable Python defining
``run(ctx)``. The same checks serve the editor's forms (``console/editor/kind_forms.py``) and
the definitions of the API and the CLI (``console.definitions._normalise_step``), so a config is
judged the same way wherever it comes from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .checks import (
    METHODS,
    Check,
    check_body,
    check_condition,
    check_duration,
    check_headers,
    check_integer,
    check_method,
    check_optional_url,
    check_recipients,
    check_statuses,
    check_url,
    optional_text,
    required_text,
)
from .codegen import (
    generate_approval,
    generate_callback,
    generate_delay,
    generate_email,
    generate_http,
    generate_poll,
)

CODE_LABEL = "Python code"
# The form field of a setting, by name (console/editor/kind_forms.py builds the WTForms class).
FIELD_TYPES = ("string", "textarea", "select", "integer")

# ------------------------------------------------------------------------------ the kinds


@dataclass(frozen=True)
class Setting:
    """One config key: its form field, starting value and check."""

    key: str
    label: str
    field: str  # one of FIELD_TYPES
    default: Any
    check: Check
    help: str = ""
    placeholder: str = ""
    choices: tuple[str, ...] = ()
    # A definition file must give a required setting; the default only starts the form.
    required: bool = False


@dataclass(frozen=True)
class StepKind:
    name: str
    label: str
    summary: str
    settings: tuple[Setting, ...]
    generate: Callable[[dict[str, Any]], str]

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

    def code_for(self, config: dict[str, Any]) -> str:
        """The code for a valid config (``generate_code`` checks it first)."""
        values = {s.key: s.check(config.get(s.key, s.default)) for s in self.settings}
        return self.generate(values)


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
                    "string",
                    "{{ input.approver }}",
                    check_recipients,
                    "Email addresses, separated by commas.",
                    "approver@example.com, {{ input.manager }}",
                    required=True,
                ),
                Setting(
                    "subject",
                    "Subject",
                    "string",
                    "Approval needed",
                    required_text(500),
                    required=True,
                ),
                Setting(
                    "message",
                    "Message",
                    "textarea",
                    "Please approve or reject this request.",
                    required_text(),
                    "The Approve and Reject links are added below it.",
                    required=True,
                ),
                Setting(
                    "timeout",
                    "Expires after",
                    "string",
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
                    "string",
                    "{{ input.email }}",
                    check_recipients,
                    "Email addresses, separated by commas.",
                    "someone@example.com",
                    required=True,
                ),
                Setting("subject", "Subject", "string", "Hello", required_text(500), required=True),
                Setting("text", "Text", "textarea", "Hello!", required_text(), required=True),
                Setting(
                    "html",
                    "HTML (optional)",
                    "textarea",
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
                    "string",
                    "https://example.com/api",
                    check_url,
                    "",
                    "https://api.example.com/users/{{ input.user_id }}",
                    required=True,
                ),
                Setting("method", "Method", "select", "GET", check_method, choices=METHODS),
                Setting(
                    "headers",
                    "Headers",
                    "textarea",
                    "",
                    check_headers,
                    "A JSON object, or one Key: value per line.",
                    "Accept: application/json",
                ),
                Setting(
                    "body",
                    "Body",
                    "textarea",
                    "",
                    check_body,
                    "JSON (sent as application/json) or text. Not sent with GET or HEAD.",
                    '{"email": "{{ input.email }}"}',
                ),
                Setting(
                    "expected_status",
                    "Expected status",
                    "string",
                    "2xx",
                    check_statuses,
                    "Any other status fails the step: codes or classes (200, 404, 2xx), or any.",
                    "2xx",
                ),
                Setting(
                    "timeout",
                    "Timeout (seconds)",
                    "integer",
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
                    "string",
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
                    "string",
                    "{{ steps.start.output.json.status_url }}",
                    check_url,
                    "Fetched with GET on each check.",
                    "https://api.example.com/jobs/{{ steps.start.output.json.id }}",
                    required=True,
                ),
                Setting(
                    "headers",
                    "Headers",
                    "textarea",
                    "",
                    check_headers,
                    "A JSON object, or one Key: value per line.",
                ),
                Setting(
                    "condition",
                    "Done when",
                    "string",
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
                    "string",
                    "30s",
                    check_duration(0, 7 * 86400),
                    "Seconds, or 30s, 10m, 2h.",
                    "30s",
                ),
                Setting(
                    "max_retries",
                    "Re-checks before failing",
                    "integer",
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
                    "string",
                    "1d",
                    check_duration(1, 365 * 86400),
                    "Then the run continues with timed_out = True. Seconds, or 30m, 2h, 1d.",
                    "1d",
                ),
                Setting(
                    "notify_url",
                    "Send the links to (optional)",
                    "string",
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


def generate_code(kind: str, config: dict[str, Any]) -> str:
    """The generated code; raises ``ValueError`` listing the problems of an invalid config."""
    problems = config_problems(kind, config)
    if problems:
        raise ValueError("; ".join(f"{key}: {text}" if key else text for key, text in problems))
    return KINDS[kind].code_for(config)


_executed: dict[tuple[str, str], str] = {}


def executed_code(step: dict[str, Any]) -> str:
    """The code a step of a published version executes. A built-in step's code is generated
    again from its config by this console, so a fix to a kind's code (such as refusing URL
    schemes other than http and https) reaches versions published before it; a config that
    today's checks refuse keeps the code it was published with. A code step runs its code."""
    kind, config = step.get("kind"), step.get("config")
    if not kind or kind not in KINDS or not isinstance(config, dict):
        return str(step["code"])
    key = (kind, json.dumps(config, sort_keys=True))
    code = _executed.get(key)
    if code is None:
        try:
            code = generate_code(kind, config)
        except ValueError:
            code = str(step["code"])
        _executed[key] = code
    return code
