"""Forms of the editor: step cards, the input field builder, publishing, import, and the run
form generated from a version's input schema."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, Regexp

from ..jsonbody import parse_json

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
NAME_MESSAGE = "Lower-case letters, digits and _, starting with a letter (at most 63)."
PROPERTY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class RevisionForm(FlaskForm):
    """Buttons that change the draft: the CSRF token and the revision the page is based on."""

    revision = HiddenField(validators=[InputRequired()])

    def base_revision(self) -> int:
        try:
            return int(self.revision.data or 0)
        except ValueError:
            return -1


class NewWorkflowForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=200)])
    name = StringField(
        "Name (optional)",
        description="Used in URLs and the API; made from the title when left empty.",
        validators=[Optional(), Regexp(NAME_PATTERN, message=NAME_MESSAGE)],
    )


class AddStepForm(RevisionForm):
    kind = HiddenField()
    position = IntegerField(validators=[InputRequired(), NumberRange(min=0)])


class MoveForm(RevisionForm):
    direction = SelectField(choices=[SelectChoice("up"), SelectChoice("down")])


class OrderForm(RevisionForm):
    """The new order after a drag (the step names, ``order`` repeated)."""


class StepForm(RevisionForm):
    name = StringField(
        "Name", validators=[DataRequired(), Regexp(NAME_PATTERN, message=NAME_MESSAGE)]
    )
    code = TextAreaField("Code")
    retries = IntegerField(
        "Retries", default=0, validators=[InputRequired(), NumberRange(min=0, max=100)]
    )
    retry_delay = IntegerField(
        "Retry delay (s)", default=5, validators=[InputRequired(), NumberRange(min=0, max=86400)]
    )
    timeout = IntegerField(
        "Timeout (s)", default=900, validators=[InputRequired(), NumberRange(min=1, max=604800)]
    )
    execute_when_recovering = BooleanField("Execute when recovering")

    def settings(self) -> dict[str, Any]:
        return {
            "retries": self.retries.data,
            "retry_delay": self.retry_delay.data,
            "timeout": self.timeout.data,
            "execute_when_recovering": bool(self.execute_when_recovering.data),
        }


class PublishForm(RevisionForm):
    note = TextAreaField("What changed (note)", validators=[Length(max=2000)])


# ----------------------------------------------------------------------------- input builder

FIELD_TYPES = [
    SelectChoice("string", "Text"),
    SelectChoice("number", "Number"),
    SelectChoice("integer", "Whole number"),
    SelectChoice("boolean", "Yes / no"),
    SelectChoice("enum", "Choice"),
    SelectChoice("array:string", "List of text"),
    SelectChoice("array:number", "List of numbers"),
    SelectChoice("array:integer", "List of whole numbers"),
    SelectChoice("array:boolean", "List of yes / no"),
    SelectChoice("array:enum", "List of choices"),
    SelectChoice("object", "Object (JSON)"),
]
SCALARS = ("string", "number", "integer", "boolean")


class SchemaFieldForm(Form):
    name = StringField("Field name")
    type = SelectField("Type", choices=FIELD_TYPES, default="string")
    choices = StringField("Choices (comma-separated)")
    required = BooleanField("Required")
    default = StringField("Default")
    description = StringField("Description")


class InputForm(RevisionForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=200)])
    description = TextAreaField("Description")
    mode = RadioField(
        "Define the input with",
        choices=[
            SelectChoice("builder", "the field builder"),
            SelectChoice("raw", "raw JSON Schema"),
        ],
        default="builder",
    )
    fields = FieldList(FormField(SchemaFieldForm), min_entries=1)
    raw = TextAreaField("JSON Schema (draft 2020-12)")
    # How the workflow's runs are operated (docs/operations.md); ``operations_of`` reads them.
    concurrency = IntegerField("Runs at once", validators=[Optional(), NumberRange(1, 10_000)])
    retention_days = IntegerField("Keep finished runs (days)", [Optional(), NumberRange(1, 36_500)])
    notify_email = StringField("Email on failure", validators=[Length(max=2000)])
    notify_suspended = BooleanField("Also when a run waits for an approval")


def _item_kind(prop: dict[str, Any]) -> str | None:
    if "enum" in prop:
        values = prop["enum"]
        if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
            return "enum"
        return None
    kind = prop.get("type")
    return kind if kind in SCALARS else None


def fields_from_schema(schema: Any) -> list[dict[str, Any]] | None:
    """The builder rows for a schema, or None when the builder cannot show it (use raw)."""
    if schema is None:
        return []
    if not isinstance(schema, dict) or set(schema) - {"type", "properties", "required"}:
        return None
    if schema.get("type") != "object":
        return None
    required = schema.get("required") or []
    rows = []
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict) or not PROPERTY_RE.match(name):
            return None
        if set(prop) - {"type", "enum", "items", "default", "description"}:
            return None
        if prop.get("type") == "array":
            items = prop.get("items")
            if not isinstance(items, dict):
                return None
            inner = _item_kind(items)
            if inner is None or set(items) - {"type", "enum"}:
                return None
            kind = f"array:{inner}"
            choices = items.get("enum") or []
        elif prop.get("type") == "object":
            kind, choices = "object", []
        else:
            inner = _item_kind(prop)
            if inner is None:
                return None
            kind, choices = inner, prop.get("enum") or []
        default = prop.get("default")
        rows.append(
            {
                "name": name,
                "type": kind,
                "choices": ", ".join(choices),
                "required": name in required,
                "default": "" if default is None else _default_text(kind, default),
                "description": prop.get("description") or "",
            }
        )
    return rows


def _default_text(kind: str, value: Any) -> str:
    if kind.startswith("array:") and isinstance(value, list):
        return ", ".join(json.dumps(v) if not isinstance(v, str) else v for v in value)
    if kind == "object" or not isinstance(value, str):
        return json.dumps(value)
    return value


def _scalar(kind: str, text: str, choices: list[str]) -> Any:
    """Parse one value typed by a person; raises ValueError with a readable message."""
    text = text.strip()
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"{text!r} is not a finite number")
        return int(number) if number.is_integer() and "." not in text else number
    if kind == "boolean":
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"{text!r} is not yes/no (true or false)")
    if kind == "enum":
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text
    return text


def split_list(text: str) -> list[str]:
    """Items one per line, or separated by commas."""
    parts = text.splitlines() if "\n" in text.strip() else text.split(",")
    return [p.strip() for p in parts if p.strip()]


def schema_from_fields(rows: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[str]]:
    """JSON Schema from builder rows (rows without a name are ignored), and problems."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    problems: list[str] = []
    for row in rows:
        name = (row.get("name") or "").strip()
        if not name:
            continue
        if not PROPERTY_RE.match(name):
            problems.append(f"{name!r}: a field name is letters, digits and _ (not first a digit)")
            continue
        if name in properties:
            problems.append(f"{name!r}: two fields have this name")
            continue
        kind = row.get("type") or "string"
        inner = kind.split(":", 1)[1] if kind.startswith("array:") else kind
        choices = [c.strip() for c in (row.get("choices") or "").split(",") if c.strip()]
        if inner == "enum" and not choices:
            problems.append(f"{name!r}: a choice needs its choices, separated by commas")
            continue
        scalar: dict[str, Any] = {"type": "string", "enum": choices} if inner == "enum" else {}
        if inner in SCALARS:
            scalar = {"type": inner}
        if kind.startswith("array:"):
            prop: dict[str, Any] = {"type": "array", "items": scalar}
        elif kind == "object":
            prop = {"type": "object"}
        else:
            prop = dict(scalar)
        default = (row.get("default") or "").strip()
        if default:
            try:
                if kind == "object":
                    prop["default"] = parse_json(default)
                    if not isinstance(prop["default"], dict):
                        raise ValueError("the default of an object must be a JSON object")
                elif kind.startswith("array:"):
                    prop["default"] = [_scalar(inner, p, choices) for p in split_list(default)]
                else:
                    prop["default"] = _scalar(inner, default, choices)
            except ValueError as exc:
                problems.append(f"{name!r}: default: {exc}")
                continue
        if (row.get("description") or "").strip():
            prop["description"] = row["description"].strip()
        properties[name] = prop
        if row.get("required"):
            required.append(name)
    if not properties:
        return None, problems
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema, problems


def schema_from_raw(text: str) -> tuple[dict[str, Any] | None, list[str]]:
    """A JSON Schema typed by hand (empty: no schema), and problems."""
    text = text.strip()
    if not text:
        return None, []
    try:
        schema = parse_json(text)
    except ValueError as exc:
        return None, [f"Not valid JSON: {exc}"]
    if not isinstance(schema, dict):
        return None, ["Not a valid JSON Schema: it must be a JSON object"]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return None, [f"Not a valid JSON Schema: {exc.message}"]
    return schema, []


# -------------------------------------------------------------------------- import / export


class ImportForm(FlaskForm):
    file = FileField("Definition file (JSON)", validators=[FileRequired()])
    mode = RadioField(
        "Then",
        choices=[
            SelectChoice("publish", "publish it as a new version"),
            SelectChoice("draft", "save it as the draft"),
        ],
        default="publish",
    )
    note = StringField("Note", validators=[Length(max=2000)])


# ------------------------------------------------------------------------------- run form


@dataclass
class InputField:
    """How one property of the input schema maps to a field of the run form."""

    field: str  # the form field's name
    prop: str  # the property in the input
    kind: str  # string, number, integer, boolean, enum, array, object, json
    item: str | None = None
    choices: tuple[Any, ...] = ()
    required: bool = False


class RunFormBase(FlaskForm):
    pass


def run_form_class(schema: Any) -> tuple[type[RunFormBase], list[InputField]]:
    """A WTForms form for the input schema: one field per property."""
    attrs: dict[str, Any] = {}
    specs: list[InputField] = []
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        if schema is None or not isinstance(properties, dict):
            attrs["f_input"] = TextAreaField(
                "Input (JSON)", default="{}", description="A JSON object."
            )
            specs.append(InputField("f_input", "", "json"))
        return type("RunForm", (RunFormBase,), attrs), specs
    required = set(schema.get("required") or [])
    for index, (prop, spec) in enumerate(properties.items()):
        spec = spec if isinstance(spec, dict) else {}
        name = f"f_{index}"
        label = spec.get("title") or prop
        help_text = spec.get("description") or ""
        default = spec.get("default")
        is_required = prop in required
        kind = spec.get("type")
        items: dict[str, Any] = spec["items"] if isinstance(spec.get("items"), dict) else {}
        field: Any
        if "enum" in spec and isinstance(spec["enum"], list):
            values = tuple(spec["enum"])
            choices = [SelectChoice("", "— choose —")] if not is_required or default is None else []
            choices += [SelectChoice(str(i), str(v)) for i, v in enumerate(values)]
            start = str(values.index(default)) if default in values else ""
            field = SelectField(label, choices=choices, default=start, description=help_text)
            specs.append(InputField(name, prop, "enum", choices=values, required=is_required))
        elif kind == "boolean":
            field = BooleanField(label, default=bool(default), description=help_text)
            specs.append(InputField(name, prop, "boolean", required=is_required))
        elif kind == "array" and "enum" in items and isinstance(items["enum"], list):
            values = tuple(items["enum"])
            field = SelectMultipleField(
                label,
                choices=[SelectChoice(str(i), str(v)) for i, v in enumerate(values)],
                default=[str(values.index(v)) for v in default or [] if v in values],
                description=help_text or "Choose any number (Ctrl or ⌘ to pick several).",
            )
            specs.append(InputField(name, prop, "array", "enum", values, required=is_required))
        elif kind == "array" and items.get("type") in SCALARS:
            text = "\n".join(
                str(v).lower() if isinstance(v, bool) else str(v) for v in default or []
            )
            field = TextAreaField(
                label,
                default=text,
                description=(help_text + " " if help_text else "")
                + "One per line, or separated by commas.",
            )
            specs.append(InputField(name, prop, "array", items["type"], required=is_required))
        elif kind in ("string", "number", "integer"):
            text = "" if default is None else str(default)
            field = StringField(label, default=text, description=help_text)
            specs.append(InputField(name, prop, kind, required=is_required))
        else:
            text = "" if default is None else json.dumps(default, indent=2)
            field = TextAreaField(
                label,
                default=text,
                description=(help_text + " " if help_text else "") + "JSON.",
            )
            specs.append(InputField(name, prop, "object", required=is_required))
        attrs[name] = field
    return type("RunForm", (RunFormBase,), attrs), specs


def input_from_form(form: RunFormBase, specs: list[InputField]) -> dict[str, Any] | None:
    """The run's input from a submitted run form; None (with field errors) when a value
    cannot be read. The schema itself is checked by ``console.runs.start_run``."""
    value: dict[str, Any] = {}
    ok = True
    for spec in specs:
        field = getattr(form, spec.field)
        try:
            parsed, present = _read_field(field, spec)
        except ValueError as exc:
            field.errors = [str(exc)]
            ok = False
            continue
        if spec.kind == "json":
            return parsed if ok else None
        if present:
            value[spec.prop] = parsed
        elif spec.required:
            field.errors = ["This field is required."]
            ok = False
    return value if ok else None


def _read_field(field: Any, spec: InputField) -> tuple[Any, bool]:
    data = field.data
    if spec.kind == "boolean":
        return bool(data), True
    if spec.kind == "enum":
        if data in (None, ""):
            return None, False
        return spec.choices[int(data)], True
    if spec.kind == "array" and spec.item == "enum":
        picked = [spec.choices[int(i)] for i in data or []]
        return picked, bool(picked) or spec.required
    text = (data or "").strip()
    if spec.kind == "json":
        try:
            parsed = parse_json(text or "{}")
        except ValueError as exc:
            raise ValueError(f"Not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError("The input must be a JSON object, like {}")
        return parsed, True
    if not text:
        return None, False
    if spec.kind == "array":
        return [_scalar(spec.item or "string", p, []) for p in split_list(text)], True
    if spec.kind == "object":
        try:
            return parse_json(text), True
        except ValueError as exc:
            raise ValueError(f"Not valid JSON: {exc}") from None
    return _scalar(spec.kind, data if spec.kind == "string" else text, []), True
