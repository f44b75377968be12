"""Tasks, Approvals and the actions on runs. Views validate, call ``console.runs``, and answer
the fresh partial (a card, the board, or the run page's live section) to htmx, or flash and
redirect without JavaScript."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import runs as domain
from ..auth import role
from ..errors import ConsoleError, NotFound
from ..runs import bulk as bulk_actions
from ..timeutil import isoformat, utcnow
from ..web import form_error_text, is_htmx, safe_next
from . import bp, queries
from .forms import ActionForm, BulkForm
from .story import run_stamp, run_story

RUN_ID_RE = re.compile(r"^[0-9a-z]{26}$")
DECISIONS = ("approve", "reject")  # through the run's links; the others are domain.ACTIONS
DONE = {"pause": "Paused", "resume": "Resumed", "cancel": "Canceled"}
VERBS = {"pause": "paused", "resume": "resumed", "cancel": "canceled"}
ING = {"pause": "Pausing", "resume": "Resuming", "cancel": "Canceling"}
MAX_POLLED = 200


def counts_context(f: queries.Filters) -> dict[str, Any]:
    """The counts per status and the bulk form over the filter (the board and its poll)."""
    counts = queries.status_counts(f)
    return {
        "filters": f,
        "counts": counts,
        "total": sum(counts.values()),
        "statuses": queries.RUN_STATUSES,
        "bulk": queries.bulk_counts(f, counts),
        "bulk_form": BulkForm(formdata=None, **f.args()),
    }


def board_context(f: queries.Filters, before: str | None) -> dict[str, Any]:
    if before and not RUN_ID_RE.match(before):
        before = None
    return {
        **counts_context(f),
        "page": queries.page_of_runs(f, before),
        "before": before,
        "workflows": queries.workflow_names(),
        "bulk_jobs": bulk_actions.unfinished() if can_act() else [],
    }


@bp.get("/tasks")
@role("viewer")
def index() -> Any:
    f = queries.parse_filters(request.args)
    context = board_context(f, request.args.get("before"))
    if is_htmx() and request.headers.get("HX-Target") == "board":
        return render_template("tasks/_board.html", **context)
    return render_template("tasks/index.html", **context)


@bp.get("/tasks/updates")
@role("viewer")
def updates() -> Any:
    """The live poll of a list of cards: ``v=<id>~<stamp>,...`` answers the cards that
    changed, each swapping itself in out of band; with ``newest=<id>`` and the page's filters
    (the first page of Tasks) also the runs started since, put at the top, and the counts per
    status. With ``waiting_since`` (the first page of Approvals) also how many runs started
    waiting for a decision since, besides its cards. 204 when nothing changed."""
    stamps = {}
    for item in request.args.get("v", "").split(",")[:MAX_POLLED]:
        run_id, _, seen = item.partition("~")
        if RUN_ID_RE.match(run_id):
            stamps[run_id] = seen
    newest = request.args.get("newest", "")
    f = queries.parse_filters(request.args) if RUN_ID_RE.match(newest) else None
    changed, new = queries.poll(stamps, newest or None, f)
    waiting = 0
    since = parse_moment(request.args.get("waiting_since", ""))
    if since is not None:  # the first page of Approvals: runs that started waiting since
        waiting = queries.newly_waiting(since, list(stamps))
    if not changed and not new and not waiting:
        return "", 204
    context: dict[str, Any] = {"cards": changed, "new": new, "waiting": waiting}
    if f is not None:  # the first page of Tasks: its counts per status moved too
        context.update(counts_context(f))
    return render_template("tasks/_updates.html", **context)


def parse_moment(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@bp.get("/approvals")
@role("viewer")
def approvals() -> Any:
    after = request.args.get("after")
    return render_template(
        "tasks/approvals.html",
        page=queries.approvals(after),
        after=after,
        decide_open=True,
        drawn_at=isoformat(utcnow()),
    )


def needs_confirmation(destructive: bool) -> bool:
    """Without JavaScript (no ``hx-confirm``), a cancel or bulk action asks on a page first."""
    return destructive and not is_htmx() and request.form.get("confirmed") != "yes"


def perform(run_id: str, action: str, form: ActionForm) -> tuple[bool, str]:
    """Do the action if the run's state still allows it; else say what happened instead."""
    if action in DECISIONS:
        target = "resume" if action == "approve" else "cancel"
        decision = domain.decide_run(run_id, target, form.decision_payload())
        return decision.ok, decision.message
    act_on = domain.run_action(action)
    run = domain.get_run(run_id)
    if action not in domain.allowed_actions(run.status, run.paused_from, waiting=False):
        return False, f"This run is {run.status} now, so it cannot be {VERBS[action]}."
    try:
        run = act_on(run_id)
    except ConsoleError as exc:
        return False, exc.message
    note = " The step that is running finishes; no next step starts." if action == "pause" else ""
    return True, f"{DONE[action]}: the run is {run.status}.{note}"


@bp.post("/tasks/runs/<run_id>/<action>")
@role("operator")
def act(run_id: str, action: str) -> Any:
    if not RUN_ID_RE.match(run_id):
        abort(404)
    if action not in DECISIONS:
        try:
            domain.run_action(action)
        except ConsoleError as exc:  # refused before anything is looked at or changed
            abort(400, exc.message)
    form = ActionForm()
    if needs_confirmation(action in ("cancel", "reject")):
        return render_template("tasks/confirm.html", action=action, run_id=run_id, form=form)
    try:
        if form.validate_on_submit():
            ok, message = perform(run_id, action, form)
        else:
            ok, message = False, form_error_text(form)
    except NotFound:
        abort(404)
    except ConsoleError as exc:  # e.g. a payload over the size limit
        ok, message = False, exc.message
    if not is_htmx():
        flash(message, "info" if ok else "error")
        return redirect(safe_next(request.form.get("next") or url_for("tasks.index")))
    if form.view.data == "run":
        story = run_story(run_id)
        return render_template("tasks/_run_live.html", message=message, ok=ok, **story)
    card = queries.card(run_id)
    if card is None:
        abort(404)
    return render_template("tasks/_run_card.html", card=card, card_message=message, card_ok=ok)


@bp.post("/tasks/bulk")
@role("operator")
def bulk() -> Any:
    form = BulkForm()
    f = queries.parse_filters(request.form)
    if needs_confirmation(True):
        counts = queries.bulk_counts(f, queries.status_counts(f))
        return render_template(
            "tasks/confirm.html", action=form.action.data, bulk=counts, filters=f, form=form
        )
    ok, message = False, "Nothing was changed: the filters are not valid."
    if form.validate_on_submit() and not f.problems:
        action = form.action.data
        total = queries.bulk_counts(f, queries.status_counts(f)).get(action, 0)
        if total > current_app.config["BULK_INLINE_MAX"]:  # a worker applies it, with progress
            job = bulk_actions.start(action, f.run_filter, total, str(current_user.email))
            if not is_htmx():
                return redirect(url_for("tasks.bulk_status", bulk_id=job.id))
            message = f"{ING[action]} {total} runs in the background; progress below."
            context = board_context(f, None)
            return render_template(
                "tasks/_board.html", started=job, message=message, ok=True, **context
            )
        result = domain.bulk_act(action, f.run_filter)
        ok = True
        message = f"{DONE[result.action]} {result.changed} run{'s' * (result.changed != 1)}."
        if result.skipped:
            message += f" {result.skipped} skipped: they had moved on before their turn."
    elif form.errors:
        message = form_error_text(form)
    if not is_htmx():
        flash(message, "info" if ok else "error")
        return redirect(url_for("tasks.index", **f.args()))  # type: ignore[arg-type]
    context = board_context(f, None)
    return render_template("tasks/_board.html", message=message, ok=ok, **context)


@bp.get("/tasks/bulk/<bulk_id>")
@role("viewer")
def bulk_status(bulk_id: str) -> Any:
    """A bulk action's progress: the panel polls this until the action has finished."""
    try:
        job = bulk_actions.get(bulk_id)
    except NotFound:
        abort(404)
    if is_htmx():
        return render_template("tasks/_bulk_progress.html", job=job)
    return render_template("tasks/bulk.html", job=job)


@bp.get("/runs/<run_id>")
@role("viewer")
def run_page(run_id: str) -> Any:
    """One run's whole story; its live section updates itself until the run ends."""
    try:
        story = run_story(run_id)
    except NotFound:
        abort(404)
    return render_template("tasks/run.html", **story)


@bp.get("/runs/<run_id>/live")
@role("viewer")
def run_live(run_id: str) -> Any:
    """The run page's poll: 204 while nothing changed (one primary-key read), else the
    fresh live section."""
    current = run_stamp(run_id)
    if current is None:
        abort(404)
    if current == request.args.get("stamp"):
        return "", 204
    return render_template("tasks/_run_live.html", **run_story(run_id))


def can_act() -> bool:
    return bool(current_user.is_authenticated and current_user.has_role("operator"))


@bp.app_context_processor
def tasks_helpers() -> dict[str, Any]:
    return {"can_act": can_act, "bulk_stalled": bulk_actions.stalled, "is_htmx": is_htmx}
