from __future__ import annotations

from typing import Any

from flask import render_template

from ..auth import role
from . import bp


@bp.get("/users")
@role("admin")
def users() -> Any:
    return render_template("placeholder.html", title="Users")


@bp.get("/profile")
@role("viewer")
def profile() -> Any:
    return render_template("placeholder.html", title="Profile")
