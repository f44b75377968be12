"""Recover from a journal: upload a file, see what recovering it will do, confirm.

The preview (``domain.plan_recovery``) creates nothing; it carries the journal's text in the
page, so that confirming does not ask for the file again, and confirming checks that text
again from the start (``domain.recover_journal``). The endpoint is ``tasks.recover``, which
``console.jsonbody.LARGE_BODIES`` lets take bodies up to ``JOURNAL_MAX_BYTES``."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from .. import runs as domain
from ..auth import role
from ..errors import ConsoleError, Forbidden, ValidationFailed
from ..jsonbody import parse_json
from ..models import TERMINAL
from . import bp
from .forms import RecoverForm


class Refused(Exception):
    """Why the journal cannot be previewed or recovered, with the page's status code."""

    def __init__(self, status: int, message: str, problems: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems or []


def limit() -> int:
    return int(current_app.config["JOURNAL_MAX_BYTES"])


def too_large(size: int | None = None) -> Refused:
    shown = f"{size:,} bytes" if size else "larger than that"
    return Refused(
        413, f"The journal is {shown}; the limit is {limit():,} bytes. Nothing was created."
    )


def journal_text(form: RecoverForm) -> str:
    """The journal's text: the uploaded file's, else (confirming) the page's hidden copy."""
    upload = form.journal.data
    if upload is not None and getattr(upload, "filename", None):
        raw = upload.stream.read(limit() + 1)
        if len(raw) > limit():
            raise too_large()
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Refused(400, "The file is not a journal: it is not UTF-8 text.") from None
    text = form.journal_text.data or ""
    if not text.strip():
        raise Refused(400, "Choose a journal file: a run's “Download journal”.")
    if len(text.encode()) > limit():
        raise too_large(len(text.encode()))
    return text


def read_journal(text: str) -> Any:
    try:
        return parse_json(text)
    except ValueError as exc:
        raise Refused(400, f"The file is not a journal: it is not JSON we take ({exc}).") from None


def page(form: RecoverForm, status: int = 200, **context: Any) -> Any:
    context.setdefault("recovery", None)
    context.setdefault("refused", None)
    return render_template("tasks/recover.html", form=form, **context), status


@bp.get("/tasks/recover")
@role("operator")
def recover_form() -> Any:
    """The upload form; changes nothing."""
    return page(RecoverForm(formdata=None))


@bp.post("/tasks/recover")
@role("operator")
def recover() -> Any:
    """A file: the preview. ``confirm`` with the journal's text: the new run."""
    form = RecoverForm()
    confirming = request.form.get("confirm") == "yes"
    try:
        text = journal_text(form)
        doc = read_journal(text)
        if not confirming:
            recovery = domain.plan_recovery(doc)
            return page(form, recovery=recovery, text=text, terminal=TERMINAL)
        run, recovery = domain.recover_journal(doc, current_user)
    except Refused as exc:
        return page(form, exc.status, refused=exc)
    except ValidationFailed as exc:
        return page(form, 422, refused=Refused(422, exc.message, exc.details))
    except Forbidden as exc:  # a new version from an operator: the preview said why
        recovery = domain.plan_recovery(doc)
        return page(form, 403, recovery=recovery, text=text, terminal=TERMINAL, forbidden=exc)
    except ConsoleError as exc:
        return page(form, exc.status, refused=Refused(exc.status, exc.message))
    flash(
        f"Recovered run {recovery.journal_run} as a new run on {recovery.plan.version}: "
        f"{len(recovery.plan.reused)} steps taken from the journal.",
        "info",
    )
    return redirect(url_for("tasks.run_page", run_id=run.id), 303)


@bp.errorhandler(RequestEntityTooLarge)
def upload_too_large(exc: RequestEntityTooLarge) -> Any:
    """A body over the recover page's limit is refused while it is read (before the view)."""
    if request.endpoint != "tasks.recover":
        return exc
    return page(RecoverForm(formdata=None), 413, refused=too_large(request.content_length))
