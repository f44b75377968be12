"""The bulk-action job (run queue): applies one ``console.bulk`` action, recording progress."""

from __future__ import annotations

from console import bulk
from console.extensions import db

from .app import get_app


def run_bulk_action(bulk_id: str) -> str | None:
    """The RQ job. Returns the action's final status (None when another worker had it)."""
    app = get_app()
    with app.app_context():
        try:
            return bulk.execute(bulk_id)
        finally:
            db.session.remove()
