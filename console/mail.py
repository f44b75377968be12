"""Email: every message a step sends is recorded in the Outbox; with ``MAIL_SERVER`` set it
is also delivered over SMTP."""

from __future__ import annotations

import smtplib
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from flask import current_app


class MailError(Exception):
    pass


def normalise_recipients(to: Any) -> list[str]:
    if isinstance(to, str):
        items = [part.strip() for part in to.replace(";", ",").split(",")]
    elif isinstance(to, list | tuple):
        items = [str(part).strip() for part in to]
    else:
        raise ValueError("send_email: to must be an address or a list of addresses")
    items = [i for i in items if i]
    if not items:
        raise ValueError("send_email: no recipient given")
    for item in items:
        if "@" not in item or any(c.isspace() for c in item):
            raise ValueError(f"send_email: {item!r} is not an email address")
    return items


def build_message(recipients: list[str], subject: str, text: str, html: str | None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_DEFAULT_SENDER"]
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="workflow-console")
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message


def deliver(message: EmailMessage) -> bool:
    """Send over SMTP. Returns False when no mail server is configured (Outbox only)."""
    config = current_app.config
    if not config.get("MAIL_SERVER"):
        return False
    try:
        with smtplib.SMTP(config["MAIL_SERVER"], int(config["MAIL_PORT"]), timeout=30) as smtp:
            if config.get("MAIL_USE_TLS"):
                smtp.starttls()
            if config.get("MAIL_USERNAME"):
                smtp.login(config["MAIL_USERNAME"], config.get("MAIL_PASSWORD") or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"{type(exc).__name__}: {exc}") from exc
    return True


def send_recorded(message_id: int) -> str:
    """Deliver an Outbox message and record how it went: ``sent``, ``kept`` (no mail server
    configured) or ``failed`` (then MailError is raised, failing the step)."""
    from sqlalchemy import update

    from .extensions import db, write_transaction
    from .models import OutboxMessage
    from .timeutil import utcnow

    message = db.session.get(OutboxMessage, message_id)
    assert message is not None
    error = None
    email: EmailMessage | None
    try:
        email = build_message(message.recipients, message.subject, message.text, message.html)
    except (ValueError, MessageError) as exc:  # e.g. a line break in a header (injection)
        email, error = None, f"the message was refused: {exc}"
    db.session.commit()
    status = "failed"
    if email is not None:
        try:
            status = "sent" if deliver(email) else "kept"
        except MailError as exc:
            error = str(exc)
    write_transaction()
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(status=status, error=error, sent_at=utcnow() if status == "sent" else None)
    )
    db.session.commit()
    if error:
        raise MailError(f"sending the email failed: {error}")
    return status
