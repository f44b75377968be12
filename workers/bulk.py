"""The bulk-action job (run queue): applies one ``console.runs.bulk`` action, recording progress."""

from __future__ import annotations

from console.runs import bulk

from .app import job_context


def run_bulk_action(bulk_id: str) -> str | None:
    """The RQ job. Returns the action's final status (None when another worker had it)."""
    with job_context():
        return bulk.execute(bulk_id)
