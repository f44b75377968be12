"""Forms of the users and profile pages (every one carries a CSRF token)."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from ..auth import MIN_PASSWORD_LENGTH
from ..main.forms import email_field
from ..models import ROLES

ROLE_CHOICES = [SelectChoice(r, r) for r in ROLES]
PASSWORD_LENGTH = Length(
    min=MIN_PASSWORD_LENGTH,
    max=200,
    message=f"A password needs at least {MIN_PASSWORD_LENGTH} characters (at most 200).",
)


class CreateUserForm(FlaskForm):
    email = email_field()  # the login form's rule: admin@localhost must stay possible
    role = SelectField("Role", choices=ROLE_CHOICES, default="viewer")
    password = PasswordField(
        "Initial password",
        validators=[Optional(), PASSWORD_LENGTH],
        description="Leave empty to generate one; it is shown once.",
    )
    submit = SubmitField("Create user")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    submit = SubmitField("Change role")


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    new = PasswordField(
        "New password",
        validators=[DataRequired(), PASSWORD_LENGTH],
        description=f"At least {MIN_PASSWORD_LENGTH} characters.",
    )
    confirm = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("new", message="The two new passwords differ.")],
    )
    submit = SubmitField("Change password")


class TokenForm(FlaskForm):
    name = StringField(
        "Token name",
        validators=[DataRequired(), Length(max=100)],
        description="What uses it, e.g. “deploy script”.",
    )
    submit = SubmitField("Create token")
