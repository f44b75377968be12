from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired, Length, Regexp


class LoginForm(FlaskForm):
    # Not an RFC check: the first admin is admin@localhost, which strict validators refuse.
    email = EmailField(
        "Email",
        validators=[
            DataRequired(),
            Length(max=254),
            Regexp(r"^[^@\s]+@[^@\s]+$", message="Enter an email address like name@example.com."),
        ],
    )
    password = PasswordField("Password", validators=[DataRequired()])
    submit = SubmitField("Log in")


class EmptyForm(FlaskForm):
    """A form with only the CSRF token, for buttons that change state."""

    submit = SubmitField("Submit")
