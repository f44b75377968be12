"""Step cards: between a step of the draft and the forms of its card (code or a built-in
kind from ``console.stepkinds``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict

from .. import secrets, stepkinds, steptests
from ..definitions import STEP_DEFAULTS, check_step_code
from ..drafts import StaleDraft
from ..models import StepTest, Workflow
from . import kind_forms
from .forms import StepForm

CONFIG_PREFIX = "config-"
CODE_TEMPLATE = (
    "def run(ctx):\n"
    "    # ctx.input is the run's input; earlier outputs are in ctx.steps\n"
    "    return {}\n"
)
LINE_RE = re.compile(r"^line (\d+): ")


def kinds() -> dict[str, Any]:
    return dict(stepkinds.KINDS)


def kind_label(step: dict[str, Any]) -> str:
    kind = kinds().get(step.get("kind") or "")
    return kind.label if kind is not None else stepkinds.CODE_LABEL


@dataclass
class Card:
    """Everything a step card shows."""

    step: dict[str, Any]  # the values shown (the submitted ones after a refused save)
    name: str  # the saved name, which the card's URLs use
    index: int
    count: int
    errors: dict[str, list[str]] = field(default_factory=dict)
    code_error: str | None = None
    conflict: StaleDraft | None = None
    saved: bool = False
    test: StepTest | None = None
    sample_input: str = "{}"
    kind_form: Any = None
    # A published step the draft has not changed starts as its one-line outline.
    collapsed: bool = False
    resume_data: str = ""
    input_schema: Any = None  # the draft's, for the warnings of {{ input.<field> }}

    @property
    def is_kind(self) -> bool:
        return bool(self.step.get("kind"))

    @property
    def label(self) -> str:
        return kind_label(self.step)

    @property
    def summary(self) -> str:
        return step_summary(self.step)

    @property
    def suspends(self) -> bool:
        return steptests.suspends(self.step)

    @property
    def reruns(self) -> bool:
        return steptests.reruns(self.step)

    @property
    def code_error_line(self) -> int | None:
        match = LINE_RE.match(self.code_error or "")
        return int(match.group(1)) if match else None

    @property
    def unknown_secrets(self) -> dict[str, str]:
        """A warning per field (config key, or "code") naming a secret that does not exist:
        the step imports and saves, and fails with KeyError until the secret is added."""
        defined = set(secrets.secret_names())
        found = {}
        fields = self.step.get("config") or {} if self.is_kind else {"code": self.step.get("code")}
        for key, value in fields.items():
            step = {"config": {key: value}} if self.is_kind else {"code": value}
            missing = sorted(secrets.step_secret_names(step) - defined)
            if missing:
                have = ", ".join(sorted(defined)) or "none yet"
                found[key] = (
                    f"No secret named {', '.join(missing)} (defined: {have}): the step fails "
                    "with KeyError until it is added on the Secrets page."
                )
        return found

    @property
    def unknown_inputs(self) -> dict[str, str]:
        """A warning per setting naming an input field the input schema does not have."""
        if not self.is_kind:
            return {}
        return stepkinds.input_reference_warnings(self.step.get("config"), self.input_schema)

    def form(self) -> StepForm:
        """The card's form filled with the shown values (no request data)."""
        data = {key: self.step.get(key, default) for key, default in STEP_DEFAULTS.items()}
        data.update(name=self.step.get("name"), code=self.step.get("code") or "")
        form = StepForm(formdata=None, data=data)
        for key, messages in self.errors.items():
            if hasattr(form, key):
                getattr(form, key).errors = list(messages)
        return form


def kind_form(step: dict[str, Any], formdata: MultiDict | None = None) -> Any:
    if formdata is not None:
        return kind_forms.form_for(step["kind"], formdata=formdata, prefix=CONFIG_PREFIX)
    return kind_forms.form_for(step["kind"], data=step.get("config") or {}, prefix=CONFIG_PREFIX)


def unique_name(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    number = 2
    while f"{base}_{number}" in taken:
        number += 1
    return f"{base}_{number}"


def new_step(kind: str, taken: set[str]) -> dict[str, Any]:
    """A fresh step of the chosen kind ("code" or a built-in kind's name)."""
    step: dict[str, Any] = dict(STEP_DEFAULTS)
    if kind in ("", "code"):
        # Named after its place in the count (a fourth step is step_4), never a name taken.
        number = len(taken) + 1
        while f"step_{number}" in taken:
            number += 1
        step.update(name=f"step_{number}", code=CODE_TEMPLATE)
        return step
    builtin = kinds().get(kind)
    if builtin is None:
        raise KeyError(kind)
    config = builtin.defaults()
    step.update(
        name=unique_name(kind, taken),
        kind=kind,
        config=config,
        code=stepkinds.generate_code(kind, config),
    )
    return step


def read_card(
    form: StepForm, current: dict[str, Any], formdata: MultiDict, other_names: set[str]
) -> tuple[dict[str, Any], dict[str, list[str]], str | None, Any]:
    """The step as the submitted card describes it, with the problems found:
    (step, field errors, code error, the kind's config form)."""
    form.validate()
    errors = {
        key: list(messages) for key, messages in form.errors.items() if key not in ("revision",)
    }
    step: dict[str, Any] = {"name": (form.name.data or "").strip()}
    if step["name"] in other_names:
        errors.setdefault("name", []).append("Another step already has this name.")
    for key, default in STEP_DEFAULTS.items():
        value = getattr(form, key).data
        step[key] = default if value is None and key not in errors else value
    step["execute_when_recovering"] = bool(form.execute_when_recovering.data)
    code_error = None
    config_form = None
    if current.get("kind"):
        kind = current["kind"]
        config_form = kind_form(current, formdata)
        config = kind_forms.config_from_form(kind, config_form)
        step.update(kind=kind, config=config)
        problems = stepkinds.config_problems(kind, config)
        for key, message in problems:
            target = getattr(config_form, key, None) if key else None
            if target is not None:
                target.errors = [*list(target.errors or []), message]
            else:
                errors.setdefault("config", []).append(message)
        step["code"] = "" if problems else stepkinds.generate_code(kind, config)
    else:
        step["code"] = (form.code.data or "").replace("\r\n", "\n")
        if not step["code"].strip():
            code_error = "The code is empty: define run(ctx)."
        else:
            code_error = check_step_code(step["code"], f"<step {step['name']}>")
    return step, errors, code_error, config_form


def step_summary(step: dict[str, Any], width: int = 90) -> str:
    """A card's outline: the kind's settings (``url: …, method: GET``), or the size and first
    statement of a code step, on one line."""
    if step.get("kind"):
        parts = [
            f"{key}: {value if isinstance(value, str) else json.dumps(value)}"
            for key, value in (step.get("config") or {}).items()
            if value not in (None, "", [], {})
        ]
        text = ", ".join(parts) or "default settings"
    else:
        lines = [line.strip() for line in (step.get("code") or "").splitlines()]
        body = [line for line in lines if line and not line.startswith(("#", "def run"))]
        text = f"{len(lines)} lines" + (f": {body[0]}" if body else "")
    return text if len(text) <= width else text[: width - 1] + "…"


def sample_text(value: Any) -> str:
    return json.dumps(value if value is not None else {}, indent=2)


def workflow_sample(workflow: Workflow, definition: dict[str, Any]) -> str:
    """The workflow's one test input: the last one tested with, else the input schema's
    defaults and examples."""
    last = steptests.workflow_sample(workflow.id)
    if isinstance(last, dict):
        return sample_text(last)
    return sample_text(example_input(definition.get("input_schema")))


def example_input(schema: Any) -> dict[str, Any]:
    samples = {"string": "text", "number": 1.5, "integer": 1, "boolean": True, "object": {}}
    example: dict[str, Any] = {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    for prop, spec in (properties or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        if "default" in spec:
            example[prop] = spec["default"]
        elif isinstance(spec.get("examples"), list) and spec["examples"]:
            example[prop] = spec["examples"][0]
        elif spec.get("enum"):
            example[prop] = spec["enum"][0]
        elif spec.get("type") == "array":
            example[prop] = []
        else:
            example[prop] = samples.get(str(spec.get("type")))
    return example


def card_for(workflow: Workflow, definition: dict[str, Any], index: int, **extra: Any) -> Card:
    step = definition["steps"][index]
    card = Card(
        step=step,
        name=step["name"],
        index=index,
        count=len(definition["steps"]),
        test=steptests.last_test(workflow.id, step["name"]),
        input_schema=definition.get("input_schema"),
        **extra,
    )
    if card.test is not None and "sample_input" not in extra:
        card.sample_input = sample_text(card.test.input)
    if card.test is not None and (card.test.step or {}).get("resume_data") is not None:
        card.resume_data = json.dumps(card.test.step["resume_data"])
    if card.is_kind and card.kind_form is None and kinds():
        card.kind_form = kind_form(step)
    return card
