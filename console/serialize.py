"""JSON views of the domain objects, shared by the API and the CLI."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import func, select

from .extensions import db
from .links import links_for, mask_links
from .models import ACTIVE, Run, StepRun, Workflow, WorkflowVersion
from .runs.slots import waiting_for
from .scheduling import schedule_definition, schedules_of
from .timeutil import isoformat


def run_url(run_id: str) -> str:
    return f"{current_app.config['BASE_URL']}/runs/{run_id}"


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow": run.workflow.name,
        "version": run.version.label,
        "status": run.status,
        "trigger": run.trigger,
        "current_step": run.current_step,
        "step_count": run.step_count,
        "created_at": isoformat(run.created_at),
        "started_at": isoformat(run.started_at),
        "finished_at": isoformat(run.finished_at),
        "compute_ms": run.compute_ms,
        "waiting_for": waiting_for(run),
        "rerun_of": run.rerun_of,
        "recovered_from": run.recovered_from,
        "url": run_url(run.id),
    }


def step_view(row: StepRun | None, name: str, status: str) -> dict[str, Any]:
    if row is None:
        return {
            "name": name,
            "status": status,
            "output": None,
            "resume_data": None,
            "timed_out": False,
            "runs": 0,
            "attempts": 0,
            "started_at": None,
            "finished_at": None,
            "duration_ms": None,
            "error": None,
            "reused": False,
            "reused_from": None,
        }
    return {
        "name": row.name,
        "status": row.status,
        "output": row.output,
        "resume_data": row.resume_data,
        "timed_out": row.timed_out,
        "runs": row.runs,
        "attempts": row.attempts,
        "started_at": isoformat(row.started_at),
        "finished_at": isoformat(row.finished_at),
        "duration_ms": row.duration_ms,
        "error": row.error,
        "reused": row.reused,
        "reused_from": row.reused_from,
    }


def run_detail(run: Run, *, links: bool = True) -> dict[str, Any]:
    """The run with its steps. ``links=False`` for those who may not see resume and cancel
    links (viewers): no ``links``, and the links in its input, outputs and errors masked."""
    rows = {row.name: row for row in run.steps}
    steps = []
    for position, step in enumerate(run.version.steps):
        name = step["name"]
        row = rows.get(name)
        status = "pending"
        if row is None and position == run.current_step and run.status == "running":
            status = "running"
        if (
            row is not None
            and row.status == "failed"
            and run.status == "running"
            and position == run.current_step
        ):
            status = "running"
        view = step_view(row, name, status)
        if row is not None and status == "running":
            view["status"] = "running"
        steps.append(view)
    data = run_summary(run)
    data.update({"input": run.input, "output": run.output, "error": run.error, "steps": steps})
    if not links:
        return dict(mask_links(data))
    if run.status == "suspended" or (run.status == "paused" and run.paused_from == "suspended"):
        from .runs import open_links

        waiting = open_links(run.id)
        if waiting is not None:
            urls = links_for(waiting[0])
            data["links"] = {
                "resume_url": urls.resume_url,
                "cancel_url": urls.cancel_url,
                "expires_at": isoformat(waiting[1]),
            }
    return data


def version_summary(version: WorkflowVersion, active_runs: int) -> dict[str, Any]:
    return {
        "label": version.label,
        "published_at": isoformat(version.published_at),
        "note": version.note,
        "active_runs": active_runs,
    }


def active_runs_by_version(workflow: Workflow) -> dict[int, int]:
    rows = db.session.execute(
        select(Run.version_id, func.count())
        .where(Run.workflow_id == workflow.id, Run.status.in_(tuple(ACTIVE)))
        .group_by(Run.version_id)
    )
    return {version_id: count for version_id, count in rows}


def workflow_summary(workflow: Workflow) -> dict[str, Any]:
    latest = workflow.latest_version
    return {
        "name": workflow.name,
        "title": workflow.title,
        "description": workflow.description,
        "latest_version": latest.label if latest else None,
        "published_at": isoformat(latest.published_at) if latest else None,
        "steps": len(latest.steps) if latest else 0,
        "has_draft": workflow.draft is not None,
        "updated_at": isoformat(workflow.updated_at),
    }


def workflow_detail(workflow: Workflow) -> dict[str, Any]:
    latest = workflow.latest_version
    data: dict[str, Any] = (
        dict(latest.definition)
        if latest
        else {
            "name": workflow.name,
            "title": workflow.title,
            "description": workflow.description,
            "version": None,
            "steps": [],
            "schedules": [],
        }
    )
    # Schedules are the workflow's current ones, not a version's (docs/definitions.md).
    data["schedules"] = [schedule_definition(s) for s in schedules_of(workflow.id)]
    counts = active_runs_by_version(workflow)
    data["versions"] = [version_summary(v, counts.get(v.id, 0)) for v in workflow.live_versions]
    data["draft"] = workflow.draft
    return data
