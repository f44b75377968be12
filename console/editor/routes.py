from __future__ import annotations

from typing import Any

from flask import render_template

from ..auth import role
from . import bp


@bp.get("/workflows")
@role("viewer")
def index() -> Any:
    return render_template("placeholder.html", title="Workflows")
