"""Re-running a finished run (docs/runs.md#re-run): the request's checks, the plan
(``plan.plan_rerun``) and the new run that follows it exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ..errors import Conflict, ValidationFailed
from ..extensions import db
from ..models import TERMINAL, Run, TaskResult, WorkflowVersion
from .plan import Original, Plan, from_step_problem, plan_rerun, step_hash
from .start import Seed, input_problems, start_seeded_run

REQUEST_FIELDS = ("from_step", "version", "smart", "input", "dry_run")


@dataclass(frozen=True)
class RerunRequest:
    from_step: str | None = None
    version: str = "original"
    smart: bool = False
    input: dict[str, Any] | None = None
    dry_run: bool = False

    @property
    def mode(self) -> str:
        return "from_step" if self.from_step else ("smart" if self.smart else "plain")

    @classmethod
    def parse(cls, body: Any) -> RerunRequest:
        """The API's body, with one 422 detail per field that is wrong."""
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ValidationFailed("The body must be a JSON object")
        problems = [
            {"path": f"/{k}", "message": "unknown field"}
            for k in sorted(set(body) - set(REQUEST_FIELDS))
        ]
        from_step, version = body.get("from_step"), body.get("version", "original")
        if from_step is not None and (not isinstance(from_step, str) or not from_step):
            problems.append({"path": "/from_step", "message": "must be a step name or null"})
        if version is None:
            version = "original"
        if not isinstance(version, str) or not version:
            problems.append(
                {"path": "/version", "message": 'must be "original", "latest" or a label'}
            )
        for key in ("smart", "dry_run"):
            if not isinstance(body.get(key, False), bool):
                problems.append({"path": f"/{key}", "message": "must be true or false"})
        new_input = body.get("input")
        if new_input is not None and not isinstance(new_input, dict):
            problems.append({"path": "/input", "message": "must be an object or null"})
        if from_step and body.get("smart"):
            problems.append({"path": "/smart", "message": "give from_step or smart, not both"})
        if problems:
            raise ValidationFailed("The re-run request is not valid", problems)
        return cls(
            from_step, version, bool(body.get("smart")), new_input, bool(body.get("dry_run"))
        )


def _chosen_version(run: Run, label: str) -> WorkflowVersion:
    if label == "original":
        return run.version
    workflow = run.workflow
    if label == "latest":
        latest = workflow.latest_version
        if latest is None:
            raise ValidationFailed(
                "The workflow has no version to re-run on",
                [{"path": "/version", "message": "no published version"}],
            )
        return latest
    for version in workflow.live_versions:
        if version.label == label:
            return version
    raise ValidationFailed(
        f"Workflow {workflow.name!r} has no version {label!r}",
        [{"path": "/version", "message": f"no version {label!r}"}],
    )


def original_of(run: Run) -> Original:
    rows = [row for row in run.steps if row.status == "completed"]
    return Original(
        steps={step["name"]: step for step in run.version.steps},
        completed={row.name for row in rows},
        reads={row.name: row.reads for row in rows},
        input=run.input or {},
    )


def rerun_plan(run: Run, request: RerunRequest) -> tuple[Plan, WorkflowVersion, dict[str, Any]]:
    """What re-running ``run`` as ``request`` asks would do: the plan, the version and the
    input. Refuses (409) a run that is not finished and (422) what the new run cannot take."""
    if run.status not in TERMINAL:
        raise Conflict(f"Run {run.id} is {run.status}; only a finished run can be re-run")
    version = _chosen_version(run, request.version)
    new_input = run.input if request.input is None else request.input
    problems = input_problems(version.definition.get("input_schema"), new_input)
    if problems:
        raise ValidationFailed("The input does not match the workflow's input schema", problems)
    original = original_of(run)
    if request.from_step:
        problem = from_step_problem(original, version.steps, request.from_step)
        if problem is not None:
            raise ValidationFailed(problem["message"], [problem])
    plan = plan_rerun(
        original,
        version.steps,
        version.label,
        new_input or {},
        mode=request.mode,
        from_step=request.from_step,
    )
    return plan, version, new_input or {}


def rerun_run(run: Run, request: RerunRequest, user: str | None) -> tuple[Run, Plan]:
    """Start the re-run ``rerun_plan`` describes: the reused steps' results (and their task
    results) are copied, every other step executes."""
    plan, version, new_input = rerun_plan(run, request)
    rows = {row.name: row for row in run.steps}
    tasks: dict[str, dict[str, Any]] = {}
    reused = set(plan.reused)
    for task in db.session.scalars(
        select(TaskResult).where(TaskResult.run_id == run.id, TaskResult.step_name.in_(reused))
    ):
        tasks.setdefault(task.step_name, {})[task.key] = task.result
    positions = {step["name"]: i for i, step in enumerate(version.steps)}
    steps = {step["name"]: step for step in version.steps}
    seeds = []
    for planned in plan.steps:
        if planned.action != "reuse":
            continue
        row = rows[planned.name]
        seeds.append(
            Seed(
                name=row.name,
                position=positions[row.name],
                output=row.output,
                resume_data=row.resume_data,
                timed_out=row.timed_out,
                runs=row.runs,
                reused_from=row.reused_from or run.id,
                content_hash=row.content_hash or step_hash(steps[row.name]),
                reads=row.reads,
                recovering=planned.execute_when_recovering,
                tasks=tasks.get(row.name, {}),
            )
        )
    new = start_seeded_run(
        version, new_input, seeds, trigger=f"rerun:{run.id}", user=user, rerun_of=run.id
    )
    return new, plan


def reruns_of(run_id: str) -> list[Run]:
    """The runs that re-run ``run_id``, oldest first."""
    return list(db.session.scalars(select(Run).where(Run.rerun_of == run_id).order_by(Run.id)))
