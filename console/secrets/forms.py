"""The Secrets page's forms. A value is only ever typed in (a password field), never shown."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Regexp

from .store import NAME_RE, NAME_RULE


class SecretForm(FlaskForm):
    """Add a secret, or replace one's value (then ``name`` comes from the row)."""

    name = StringField(
        "Name",
        validators=[DataRequired(), Regexp(NAME_RE.pattern, message=f"Use {NAME_RULE}.")],
        description=(
            'Step code reads it as ctx.secrets["NAME"]; built-in steps as {{ secrets.NAME }}.'
        ),
    )
    value = PasswordField(
        "Value",
        validators=[DataRequired()],
        description="At most 64 KiB. It is stored encrypted and never shown again.",
    )
