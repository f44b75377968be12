"""Routes of the Schedules tab: a workflow's cron schedules, their next fires and history.

Viewers read; editors add, edit, pause, enable and delete. Every change goes through
``console.scheduling``, which asks the scheduler process to re-register at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from .. import scheduling
from ..auth import role
from ..errors import ConsoleError, NotFound, ValidationFailed
from ..extensions import db
from ..models import Schedule, ScheduleFire, Workflow
from ..runs import get_workflow
from ..timeutil import isoformat, utcnow
from . import bp
from .forms import ScheduleForm, ToggleForm

MISSED_WORDS = {
    "latest": "after an outage, one run for the latest missed fire",
    "all": "after an outage, one run for every missed fire",
    "skip": "after an outage, missed fires are recorded, not started",
}
OVERLAP_WORDS = {
    "allow": "a fire starts a run even while the previous one is unfinished",
    "skip": "a fire while the previous run is unfinished is recorded as skipped",
}


@dataclass
class Fire:
    """A fire time as the page shows it: in the schedule's timezone, and ISO for the viewer's."""

    local: str
    iso: str | None


def fire_view(when: datetime, timezone: str) -> Fire:
    local = when.astimezone(ZoneInfo(timezone))
    return Fire(f"{local:%a %d %b %Y, %H:%M} {local.tzname()}", isoformat(when))


@dataclass
class ScheduleView:
    schedule: Schedule
    explanation: str
    input_text: str
    upcoming: list[Fire]
    last: ScheduleFire | None
    last_local: Fire | None
    fires: list[tuple[ScheduleFire, Fire]]
    problems: list[tuple[ScheduleFire, Fire]]


def schedule_view(schedule: Schedule, active: bool, now: datetime) -> ScheduleView:
    tz = schedule.timezone
    upcoming = scheduling.next_fires(schedule.cron, tz, now) if active else []
    fires = [(f, fire_view(f.fire_at, tz)) for f in scheduling.recent_fires(schedule.id, 5)]
    problems = [(f, fire_view(f.fire_at, tz)) for f in scheduling.problem_fires(schedule.id)]
    return ScheduleView(
        schedule=schedule,
        explanation=scheduling.explain(schedule.cron, tz),
        input_text=input_text(schedule),
        upcoming=[fire_view(f, tz) for f in upcoming],
        last=fires[0][0] if fires else None,
        last_local=fires[0][1] if fires else None,
        fires=fires,
        problems=problems,
    )


def input_text(schedule: Schedule) -> str:
    if schedule.input_code is not None:
        return schedule.input_code
    return json.dumps(schedule.input if schedule.input is not None else {}, indent=2)


def load(name: str) -> Workflow:
    try:
        return get_workflow(name)
    except NotFound:
        abort(404)


def load_schedule(workflow: Workflow, schedule_name: str) -> Schedule:
    schedule = db.session.scalar(
        select(Schedule).filter_by(workflow_id=workflow.id, name=schedule_name)
    )
    if schedule is None:
        abort(404)
    return schedule


def page_context(workflow: Workflow, form: ScheduleForm | None = None) -> dict[str, Any]:
    published = workflow.latest_version is not None
    now = utcnow()
    schedules = scheduling.schedules_of(workflow.id)
    views = [schedule_view(s, published and s.enabled, now) for s in schedules]
    if form is None:
        form = ScheduleForm(formdata=None, timezone=scheduling.default_timezone())
    return {
        "workflow": workflow,
        "workflow_name": workflow.name,
        "published": published,
        "views": views,
        "form": form,
        "toggle": ToggleForm(),
        "can_edit": current_user.has_role("editor"),
        "missed_words": MISSED_WORDS,
        "overlap_words": OVERLAP_WORDS,
        "workflow_url": workflow_url(workflow),
        "timezones": sorted(available_timezones()),
        "preview": preview_context(form.cron.data or "", form.timezone.data or ""),
    }


def workflow_url(workflow: Workflow) -> str | None:
    # The editor's workflow page, where the Schedules tab sits, when that page exists.
    if "editor.workflow" in current_app.view_functions:
        return url_for("editor.workflow", name=workflow.name)
    return None


def preview_context(cron: str, timezone: str) -> dict[str, Any]:
    cron = " ".join(cron.split())
    timezone = timezone.strip() or scheduling.default_timezone()
    if not cron:
        return {"error": None, "explanation": None, "upcoming": []}
    error = scheduling.cron_error(cron) or scheduling.timezone_error(timezone)
    if error:
        return {"error": error, "explanation": None, "upcoming": []}
    fires = scheduling.next_fires(cron, timezone, utcnow())
    return {
        "error": None,
        "explanation": scheduling.explain(cron, timezone),
        "upcoming": [fire_view(f, timezone) for f in fires],
    }


# ---------------------------------------------------------------------------------- reads


@bp.get("/workflows/<name>/schedules")
@role("viewer")
def index(name: str) -> Any:
    return render_template("schedules/index.html", **page_context(load(name)))


@bp.get("/workflows/<name>/schedules/preview")
@role("viewer")
def preview(name: str) -> Any:
    """The cron in words and its next five fires, as the form is typed (htmx)."""
    load(name)
    context = preview_context(request.args.get("cron", ""), request.args.get("timezone", ""))
    return render_template("schedules/_preview.html", preview=context, workflow_name=name)


@bp.get("/workflows/<name>/schedules/<schedule_name>/edit")
@role("editor")
def edit(name: str, schedule_name: str) -> Any:
    workflow = load(name)
    schedule = load_schedule(workflow, schedule_name)
    form = ScheduleForm(
        formdata=None,
        name=schedule.name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        input=input_text(schedule),
        enabled=schedule.enabled,
        missed=schedule.missed,
        overlap=schedule.overlap,
    )
    return render_edit(workflow, schedule, form)


def render_edit(
    workflow: Workflow, schedule: Schedule, form: ScheduleForm, status: int = 200
) -> tuple[str, int]:
    context = {
        "workflow": workflow,
        "workflow_name": workflow.name,
        "schedule": schedule,
        "form": form,
        "workflow_url": workflow_url(workflow),
        "timezones": sorted(available_timezones()),
        "preview": preview_context(form.cron.data or "", form.timezone.data or ""),
    }
    return render_template("schedules/edit.html", **context), status


# -------------------------------------------------------------------------------- changes


def _save(form: ScheduleForm, action: Any) -> bool:
    """Validate the form, call the domain; on problems, put them under the fields."""
    if not form.validate_on_submit():
        return False
    values = form.values()
    if values is None:
        return False
    try:
        action(values)
    except ValidationFailed as exc:
        form.show_errors(exc.details)
        if not exc.details:
            flash(exc.message, "error")
        return False
    return True


@bp.post("/workflows/<name>/schedules")
@role("editor")
def create(name: str) -> Any:
    workflow = load(name)
    form = ScheduleForm()
    if _save(form, lambda values: scheduling.create_schedule(workflow, values, try_input=True)):
        saved = form.schedule_name()
        flash(f"Schedule {saved} added.", "info")
        return redirect(url_for("schedules.index", name=name) + f"#schedule-{saved}")
    context = page_context(load(name), form)
    return render_template("schedules/index.html", adding=True, **context), 422


@bp.post("/workflows/<name>/schedules/<schedule_name>/edit")
@role("editor")
def update(name: str, schedule_name: str) -> Any:
    workflow = load(name)
    schedule = load_schedule(workflow, schedule_name)
    form = ScheduleForm()
    if _save(form, lambda values: scheduling.update_schedule(schedule, values, try_input=True)):
        saved = form.schedule_name()
        flash(f"Schedule {saved} saved.", "info")
        return redirect(url_for("schedules.index", name=name) + f"#schedule-{saved}")
    workflow = load(name)
    return render_edit(workflow, load_schedule(workflow, schedule_name), form, 422)


@bp.post("/workflows/<name>/schedules/<schedule_name>/<any(pause, enable):action>")
@role("editor")
def toggle(name: str, schedule_name: str, action: str) -> Any:
    schedule = load_schedule(load(name), schedule_name)
    if ToggleForm().validate_on_submit():
        scheduling.set_enabled(schedule, action == "enable")
        flash(f"Schedule {schedule_name} {'enabled' if action == 'enable' else 'paused'}.", "info")
    return redirect(url_for("schedules.index", name=name) + f"#schedule-{schedule_name}")


@bp.post("/workflows/<name>/schedules/<schedule_name>/delete")
@role("editor")
def delete(name: str, schedule_name: str) -> Any:
    schedule = load_schedule(load(name), schedule_name)
    if ToggleForm().validate_on_submit():
        try:
            scheduling.delete_schedule(schedule)
        except ConsoleError as exc:
            flash(exc.message, "error")
        else:
            flash(f"Schedule {schedule_name} deleted; its runs are kept.", "info")
    return redirect(url_for("schedules.index", name=name))
