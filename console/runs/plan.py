"""The plan of a re-run (docs/runs.md#re-run): for each step of the chosen version, whether the
new run reuses the original run's result or executes the step, and why. One function,
``plan_rerun``, decides; the dry run, the console's Re-run dialog and the re-run itself all call
it, so what a person is shown is what runs.

Also what a step's *content* is (``step_hash``): its code, kind and config, and the settings
that change how it executes. A change of either makes a smart re-run execute the step.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

CODE_FIELDS = ("code", "kind", "config")
SETTINGS_FIELDS = ("retries", "retry_delay", "timeout", "execute_when_recovering")
MODES = ("plain", "from_step", "smart")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _code_part(step: dict[str, Any]) -> dict[str, Any]:
    # A kind step's code is generated from its config: the config is what it is.
    if step.get("kind"):
        return {"kind": step["kind"], "config": step.get("config")}
    return {"code": step.get("code")}


def _settings_part(step: dict[str, Any]) -> dict[str, Any]:
    defaults = {"retries": 0, "retry_delay": 5, "timeout": 900, "execute_when_recovering": False}
    return {k: step.get(k, defaults[k]) for k in SETTINGS_FIELDS}


def step_hash(step: dict[str, Any]) -> str:
    """The content hash recorded with every execution of ``step`` (a definition's step)."""
    return _digest({"code": _code_part(step), "settings": _settings_part(step)})


def step_change(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """``"code changed"``, ``"settings changed"`` or None between two versions of a step."""
    if _code_part(before) != _code_part(after):
        return "code changed"
    if _settings_part(before) != _settings_part(after):
        return "settings changed"
    return None


@dataclass
class PlannedStep:
    name: str
    action: str  # "reuse" or "execute"
    reason: str
    # For a reused step whose definition says so: it executes anyway, told it recovers.
    execute_when_recovering: bool = False

    def view(self) -> dict[str, Any]:
        data = {"name": self.name, "action": self.action, "reason": self.reason}
        if self.execute_when_recovering:
            data["execute_when_recovering"] = True
        return data


@dataclass
class Plan:
    version: str
    steps: list[PlannedStep] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {"version": self.version, "steps": [s.view() for s in self.steps]}

    @property
    def reused(self) -> list[str]:
        return [s.name for s in self.steps if s.action == "reuse"]


@dataclass(frozen=True)
class Original:
    """What a plan needs of the original run: its version's step definitions by name, the
    steps that completed, what each read (None: not recorded, taken as everything), and its
    input."""

    steps: dict[str, dict[str, Any]]
    completed: set[str]
    reads: dict[str, Any]
    input: dict[str, Any]


def _input_reason(reads: Any, before: dict[str, Any], after: dict[str, Any]) -> str | None:
    fields = None if reads is None else reads.get("input")
    if fields is None or fields == "*":
        return None if before == after else "reads the whole input, which changed"
    missing = object()
    for name in fields:
        if before.get(name, missing) != after.get(name, missing):
            return f"reads input.{name}, which changed"
    return None


def plan_rerun(
    original: Original,
    steps: list[dict[str, Any]],
    version: str,
    new_input: dict[str, Any],
    *,
    mode: str,
    from_step: str | None = None,
) -> Plan:
    """The plan for re-running ``original`` on ``steps`` (the chosen version's) with
    ``new_input``. ``from_step`` must have been checked (``from_step_problem``)."""
    plan = Plan(version)
    executes: set[str] = set()
    reached = False
    for step in steps:
        name = step["name"]
        wants_recovery = bool(step.get("execute_when_recovering"))
        if mode == "plain":
            planned = PlannedStep(name, "execute", "plain re-run")
        elif mode == "from_step":
            reached = reached or name == from_step
            planned = (
                PlannedStep(name, "execute", "from_step")
                if reached
                else PlannedStep(name, "reuse", "before from_step", wants_recovery)
            )
        else:
            reason = _smart_reason(original, step, new_input, executes)
            planned = (
                PlannedStep(name, "reuse", "unchanged", wants_recovery)
                if reason is None
                else PlannedStep(name, "execute", reason)
            )
        if planned.action == "execute":
            executes.add(name)
        plan.steps.append(planned)
    return plan


def _smart_reason(
    original: Original, step: dict[str, Any], new_input: dict[str, Any], executes: set[str]
) -> str | None:
    name = step["name"]
    before = original.steps.get(name)
    if before is None:
        return "new step"
    if name not in original.completed:
        return "did not complete in the original run"
    change = step_change(before, step)
    if change is not None:
        return change
    reads = original.reads.get(name)
    reason = _input_reason(reads, original.input, new_input)
    if reason is not None:
        return reason
    if reads is None:  # not recorded: it may have read any earlier step
        read_steps = sorted(executes)
    else:
        read_steps = [s for s in reads.get("steps", []) if s in executes]
    if read_steps:
        return f"reads steps.{read_steps[0]}, which executes"
    return None


def from_step_problem(
    original: Original, steps: list[dict[str, Any]], from_step: str
) -> dict[str, str] | None:
    """Why ``from_step`` cannot be re-run from on ``steps``, as one API detail, or None."""
    names = [s["name"] for s in steps]
    if from_step not in names:
        return {"path": "/from_step", "message": f"no step named {from_step!r} in this version"}
    for name in names[: names.index(from_step)]:
        if name not in original.completed:
            return {
                "path": "/from_step",
                "message": f"step {name!r} before {from_step!r} did not complete in the "
                "original run, so its result cannot be reused",
            }
    return None
