"""Forms of the Schedules tab: a schedule's fields, and the buttons that pause or delete it."""

from __future__ import annotations

import json
from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length

from ..definitions import NAME_RE, snake_case
from ..jsonbody import JSONRefused, parse_json
from ..scheduling import DEFAULT_MISSED, DEFAULT_OVERLAP

MISSED_CHOICES = [
    SelectChoice("latest", "Latest: run the latest missed fire"),
    SelectChoice("all", "All: run every missed fire"),
    SelectChoice("skip", "Skip: record them, run none"),
]
OVERLAP_CHOICES = [
    SelectChoice("allow", "Allow: start a run at every fire"),
    SelectChoice("skip", "Skip: no new run while the last one is unfinished"),
]


class ScheduleForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=63)])
    cron = StringField("Cron expression", validators=[Length(max=120)])
    timezone = StringField("Timezone", validators=[Length(max=64)])
    input = TextAreaField("Input")
    enabled = BooleanField("Enabled", default=True)
    missed = SelectField("Missed fires", choices=MISSED_CHOICES, default=DEFAULT_MISSED)
    overlap = SelectField("Overlap", choices=OVERLAP_CHOICES, default=DEFAULT_OVERLAP)

    def schedule_name(self) -> str:
        """The name as typed, or made from it as a workflow's name is from its title
        ("Daily at 9am" → ``daily_at_9am``)."""
        typed = (self.name.data or "").strip()
        return typed if NAME_RE.match(typed) or not typed else snake_case(typed)

    def values(self) -> dict[str, Any] | None:
        """The schedule as the domain takes it, or None with the input field's error set.

        The input is JSON when it starts with ``{``, else a snippet defining ``input(now)``;
        empty means ``{}``."""
        text = (self.input.data or "").strip()
        value: Any = {}
        if text.startswith("{"):
            try:
                value = parse_json(text)
            except json.JSONDecodeError as exc:
                self.input.errors = [f"Not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"]
                return None
            except JSONRefused as exc:
                self.input.errors = [f"Not JSON the console takes: {exc}"]
                return None
        elif text:
            value = self.input.data
        return {
            "name": self.schedule_name(),
            "cron": (self.cron.data or "").strip(),
            "timezone": (self.timezone.data or "").strip(),
            "input": value,
            "enabled": bool(self.enabled.data),
            "missed": self.missed.data,
            "overlap": self.overlap.data,
        }

    def show_errors(self, details: list[dict[str, str]]) -> None:
        """Put the domain's problems (``{"path": "/cron", ...}``) under their fields."""
        for detail in details:
            field = getattr(self, detail["path"].strip("/").split("/")[0], None)
            if field is not None and hasattr(field, "errors"):
                field.errors = [*list(field.errors or []), detail["message"]]


class ToggleForm(FlaskForm):
    """Pause, enable or delete: a button with the CSRF token."""
