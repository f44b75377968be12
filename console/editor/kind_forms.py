"""The editor's forms for the built-in step kinds: one WTForms class per kind, built from its
settings (``console.stepkinds``), whose validators are the settings' own checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_wtf import FlaskForm
from wtforms import Field, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from ..stepkinds import KINDS, Setting, normalise_config
from ..stepkinds.checks import Check

FIELDS: dict[str, type[Field]] = {
    "string": StringField,
    "textarea": TextAreaField,
    "select": SelectField,
    "integer": IntegerField,
}


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
        fields[s.key] = FIELDS[s.field](s.label, **kwargs)
    return type(name, (FlaskForm,), fields)


FORMS: dict[str, type[FlaskForm]] = {
    name: _build_form(f"{name.capitalize()}StepForm", kind.settings) for name, kind in KINDS.items()
}


def form_for(
    kind: str, *, formdata: Any = None, data: dict[str, Any] | None = None, prefix: str = ""
) -> FlaskForm:
    """The kind's config form, filled from a request's form data or from a config."""
    values = normalise_config(kind, data or {})
    return FORMS[kind](formdata=formdata, data=values, prefix=prefix)


def config_from_form(kind: str, form: FlaskForm) -> dict[str, Any]:
    """The JSON-able config of a (validated) form, keyed by setting."""
    config: dict[str, Any] = {}
    for s in KINDS[kind].settings:
        value = form[s.key].data
        config[s.key] = "" if value is None and s.field != "integer" else value
    return config
