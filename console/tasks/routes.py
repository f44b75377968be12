from __future__ import annotations

from typing import Any

from flask import render_template

from ..auth import role
from . import bp


@bp.get("/tasks")
@role("viewer")
def index() -> Any:
    return render_template("placeholder.html", title="Tasks")


@bp.get("/approvals")
@role("viewer")
def approvals() -> Any:
    return render_template("placeholder.html", title="Approvals")
