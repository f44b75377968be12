"""Secrets as the console keeps them: create, replace, delete, list (never a value), the values
a step execution is given, and rotation to the current key."""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy import Text, cast, select

from ..errors import Conflict, NotFound, ValidationFailed
from ..extensions import db, write_transaction
from ..models import Secret, TaskResult
from ..timeutil import isoformat, utcnow
from . import vault
from .masking import Masker
from .usage import used_by

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")
MAX_VALUE_BYTES = 64 * 1024
NAME_RULE = "a capital letter, then capitals, digits or _ (at most 63), such as API_TOKEN"


def name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        return f"must be {NAME_RULE}"
    return None


def value_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    size = len(value.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        return f"must be at most 64 KiB of UTF-8 ({size} bytes given)"
    return None


def check_name(name: Any) -> str:
    problem = name_problem(name)
    if problem:
        raise ValidationFailed(
            f"The secret's name {problem}", [{"path": "/name", "message": problem}]
        )
    return str(name)


def get_secret(name: str) -> Secret:
    secret = db.session.scalar(select(Secret).where(Secret.name == name))
    if secret is None:
        raise NotFound(f"No secret named {name!r}")
    return secret


def describe(secret: Secret, usage: dict[str, list[str]]) -> dict[str, Any]:
    """A secret as every answer shows it: never its value."""
    return {
        "name": secret.name,
        "created_at": isoformat(secret.created_at),
        "updated_at": isoformat(secret.updated_at),
        "updated_by": secret.updated_by,
        "used_by": usage.get(secret.name, []),
    }


def list_secrets() -> list[dict[str, Any]]:
    usage = used_by()
    secrets = db.session.scalars(select(Secret).order_by(Secret.name))
    return [describe(s, usage) for s in secrets]


def secret_names() -> list[str]:
    return list(db.session.scalars(select(Secret.name).order_by(Secret.name)))


def set_secret(name: Any, value: Any, user: str | None) -> tuple[Secret, bool]:
    """Create or replace a secret; (the secret, whether it is new). Committed."""
    check_name(name)
    problem = value_problem(value)
    if problem:
        raise ValidationFailed(f"The value {problem}", [{"path": "/value", "message": problem}])
    # Read and write in one write transaction: on SQLite a read transaction cannot become a
    # write once another connection has committed since it began ("database is locked").
    db.session.commit()
    write_transaction()
    secret = db.session.scalar(select(Secret).where(Secret.name == name))
    created = secret is None
    now = utcnow()
    if secret is None:
        secret = Secret(name=name, created_at=now)
        db.session.add(secret)
    secret.value = vault.encrypt(value)
    secret.updated_at, secret.updated_by = now, user
    db.session.commit()
    return secret, created


def delete_secret(name: str, force: bool = False) -> None:
    """Delete a secret; refused (409, naming them) while workflows use it, unless ``force``."""
    users = used_by().get(name, [])
    db.session.commit()
    write_transaction()  # as in ``set_secret``
    secret = get_secret(name)
    if users and not force:
        db.session.rollback()
        raise Conflict(
            f"Secret {name} is used by the latest version of {', '.join(users)}; "
            "delete with ?force=1 to delete it anyway",
            [{"path": "/used_by", "message": w} for w in users],
        )
    db.session.delete(secret)
    db.session.commit()


def step_secrets() -> dict[str, str]:
    """Every secret's value, read when a step execution starts, on a connection of its own
    (no transaction stays open while the step executes). A value that no configured key
    decrypts is left out (the step's ``ctx.secrets[...]`` then raises) and logged."""
    with db.engine.connect() as conn:
        return _decrypted(conn.execute(select(Secret.name, Secret.value)).all())


def _decrypted(rows: Any) -> dict[str, str]:
    values = {}
    for name, token in rows:
        try:
            values[name] = vault.decrypt(token)
        except vault.Unreadable as exc:
            log.error("secret %s cannot be read: %s", name, exc)
    return values


def current_masker() -> Masker:
    """A masker of the secrets' current values (for what requests bring in), read in the
    session's transaction: a request holds one connection, however many arrive at once."""
    return Masker(_decrypted(db.session.execute(select(Secret.name, Secret.value)).all()))


def rotate() -> tuple[int, int]:
    """Re-encrypt every secret and sealed task result under the current key, in one
    transaction; (secrets, task results) re-encrypted. Unreadable ones raise, changing
    nothing."""
    secrets = list(db.session.scalars(select(Secret)))
    for secret in secrets:
        try:
            secret.value = vault.reencrypt(secret.value)
        except vault.Unreadable as exc:
            db.session.rollback()
            raise ValidationFailed(f"Secret {secret.name} cannot be re-encrypted: {exc}")
    marker = f"%{vault.SEALED}%"
    sealed = db.session.scalars(
        select(TaskResult).where(cast(TaskResult.result, Text).like(marker))
    )
    count = 0
    for task in sealed:
        if not vault.is_sealed(task.result):
            continue
        try:
            token = vault.reencrypt(task.result[vault.SEALED])
        except vault.Unreadable as exc:
            db.session.rollback()
            raise ValidationFailed(
                f"A task result of run {task.run_id} cannot be re-encrypted: {exc}"
            )
        task.result = {vault.SEALED: token, "shown": task.result["shown"]}
        count += 1
    db.session.commit()
    return len(secrets), count
