"""Schedules (docs/): cron expressions in IANA timezones that start runs of a workflow.

- ``cron``: validation, fire times on a timezone's wall clock (daylight-saving gaps and
  repeats fire once) and the expression in words; pure, no database;
- ``schedules``: what a schedule's fields mean, syncing from a definition, the editor's
  create/update/delete, and ``request_reconcile``;
- ``firing``: what the scheduler registers (``active_schedules``), missed fires after an
  outage (``catch_up``) and at-most-once firing (``fire``).
"""

from .cron import (
    cron_error,
    explain,
    fire_times,
    is_fire_time,
    next_fire,
    next_fires,
    previous_fire,
    timezone_error,
    wall_to_utc,
)
from .firing import (
    CATCH_UP_BATCH,
    Active,
    active_schedules,
    catch_up,
    fire,
    problem_fires,
    recent_fires,
)
from .schedules import (
    DEFAULT_MISSED,
    DEFAULT_OVERLAP,
    DIRTY_KEY,
    MISSED_POLICIES,
    OVERLAP_POLICIES,
    create_schedule,
    default_timezone,
    delete_schedule,
    input_error,
    normalise_schedule,
    request_reconcile,
    schedule_definition,
    schedules_of,
    schema_error,
    set_enabled,
    sync_schedules,
    update_schedule,
    workflow_input_schema,
)

__all__ = [
    "CATCH_UP_BATCH",
    "DEFAULT_MISSED",
    "DEFAULT_OVERLAP",
    "DIRTY_KEY",
    "MISSED_POLICIES",
    "OVERLAP_POLICIES",
    "Active",
    "active_schedules",
    "catch_up",
    "create_schedule",
    "cron_error",
    "default_timezone",
    "delete_schedule",
    "explain",
    "fire",
    "fire_times",
    "input_error",
    "is_fire_time",
    "next_fire",
    "next_fires",
    "normalise_schedule",
    "previous_fire",
    "problem_fires",
    "recent_fires",
    "request_reconcile",
    "schedule_definition",
    "schema_error",
    "schedules_of",
    "set_enabled",
    "sync_schedules",
    "timezone_error",
    "update_schedule",
    "wall_to_utc",
    "workflow_input_schema",
]
