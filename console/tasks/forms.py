"""Forms of the Tasks page: a run action (with an optional decision payload) and bulk."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, TextAreaField
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
