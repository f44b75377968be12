"""Forms of the Tasks page: a run action (with an optional decision payload), bulk, the Re-run
dialog and Recover from a journal."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import HiddenField, RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, Length, Optional, ValidationError

from ..jsonbody import parse_json

VIEWS = ("card", "run")


class ActionForm(FlaskForm):
    """Pause, resume, cancel, approve or reject one run. ``view`` says which partial the
    answer is (the run's card, or the run page's live section)."""

    view = HiddenField(default="card", validators=[Optional(), AnyOf(VIEWS)])
    comment = TextAreaField("Comment (optional)", validators=[Optional(), Length(max=10_000)])
    payload = TextAreaField("JSON payload (optional)", validators=[Optional()])

    def validate_payload(self, field: Any) -> None:
        if field.data and field.data.strip():
            try:
                parse_json(field.data)
            except ValueError as exc:
                raise ValidationError(f"The payload is not valid JSON: {exc}") from None
            if self.comment.data and self.comment.data.strip():
                raise ValidationError("Give a comment or a JSON payload, not both.")

    def decision_payload(self) -> Any:
        """What the run's link would receive: the JSON payload, else ``{"comment": ...}``
        (as the link's own form sends it), else nothing."""
        if self.payload.data and self.payload.data.strip():
            return parse_json(self.payload.data)
        comment = (self.comment.data or "").strip()
        return {"comment": comment} if comment else None


class BulkForm(FlaskForm):
    """A bulk action over the filters in the hidden fields (the page's current filters)."""

    action = StringField(validators=[AnyOf(("pause", "resume", "cancel"))])
    status = HiddenField()
    workflow = HiddenField()
    range = HiddenField()
    start = HiddenField()
    end = HiddenField()
    tz = HiddenField()
    q = HiddenField()


class RerunForm(FlaskForm):
    """The Re-run dialog: which steps execute (``mode``), on which version, with what input.
    The choices of ``from_step`` and ``version`` are the run's; the domain checks them."""

    mode = RadioField(
        "Which steps execute",
        choices=[
            SelectChoice("plain", "Every step"),
            SelectChoice("from_step", "From a step (the steps before it are reused)"),
            SelectChoice("smart", "Smart: only what changed"),
        ],
        default="plain",
    )
    from_step = SelectField("From step", validate_choice=False)
    version = SelectField("Version", default="original", validate_choice=False)
    input = TextAreaField("Input (JSON)", validators=[Optional()])

    def request_body(self, dry_run: bool) -> dict[str, Any]:
        """The body the API takes for the same re-run (``RerunRequest.parse``); raises
        ``ValueError`` when the input is not JSON we take."""
        text = (self.input.data or "").strip()
        return {
            "from_step": self.from_step.data if self.mode.data == "from_step" else None,
            "smart": self.mode.data == "smart",
            "version": self.version.data or "original",
            "input": parse_json(text) if text else None,
            "dry_run": dry_run,
        }


class RecoverForm(FlaskForm):
    """Recover from a journal: the uploaded file, then (confirming the preview) its text."""

    journal = FileField("Journal file (JSON)")
    journal_text = HiddenField()
