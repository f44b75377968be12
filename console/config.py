"""Configuration: one class over environment variables, with development defaults.

Production is recognised by ``CONSOLE_ENV=production`` or ``FLASK_ENV=production`` (the
Procfile and ``app.json`` set the first); there a missing or short ``SECRET_KEY`` is refused
instead of generated, and the session cookie is sent over HTTPS only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

TRUE_VALUES = {"1", "true", "yes", "on"}
ROOT = Path(__file__).resolve().parent.parent
MIN_SECRET_KEY_LENGTH = 32


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in TRUE_VALUES


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"{name} must be an integer, got {value!r}")


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise RuntimeError(f"{name} must be a number, got {value!r}")


def is_production() -> bool:
    return "production" in (
        os.environ.get(name, "").strip().lower() for name in ("CONSOLE_ENV", "FLASK_ENV")
    )


def instance_path() -> str:
    return os.environ.get("CONSOLE_INSTANCE_PATH") or str(ROOT / "instance")


def make_instance_folder(path: str | Path) -> Path:
    """The instance folder holds the database, the secret key and Redis's data: a folder this
    creates is the console user's alone (one that already exists keeps its mode)."""
    folder = Path(path)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def instance_socket(folder: str, name: str) -> Path:
    """A Unix socket in the instance folder, so that each checkout's stack has its own."""
    path = Path(folder).resolve() / name
    # Unix socket paths are limited to 107 bytes; deep checkouts get one in the temp folder.
    if len(str(path)) > 100:
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"console-{Path(name).stem}-{digest}.sock"
    return path


def create_private_database(uri: str) -> None:
    """Create a new SQLite file readable by its owner only; SQLite gives its journal and WAL
    files the database file's mode. An existing file is left as it is."""
    url = make_url(uri)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    if url.database.startswith("file:"):
        return
    # An existing file, or a folder that cannot take one (SQLite then says so itself).
    with contextlib.suppress(OSError):
        os.close(os.open(url.database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def database_url(instance_path: str) -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        return "sqlite:///" + os.path.join(instance_path, "console.db")
    # Heroku-style add-ons still hand out postgres://, which SQLAlchemy no longer accepts.
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def secret_key(instance_path: str, production: bool) -> str:
    key = os.environ.get("SECRET_KEY", "").strip()
    if production and len(key) < MIN_SECRET_KEY_LENGTH:
        # Anyone who knows or guesses the key can forge an admin's session cookie.
        raise RuntimeError(
            f"SECRET_KEY must be set in production to at least {MIN_SECRET_KEY_LENGTH} random "
            "characters (production: CONSOLE_ENV=production or FLASK_ENV=production); "
            "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    if key:
        return key
    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    make_instance_folder(path.parent)
    key = secrets.token_hex(32)
    # Written once with owner-only permissions; later processes read the same key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


STACK_URL_FILE = "base_url"


def running_stack_url(instance_path: str) -> str:
    """The URL ``flask up`` is serving from this instance folder, so that a command run in
    another terminal (without ``PORT``) prints links to it; empty when none is running or
    ``PORT`` is given."""
    if os.environ.get("PORT", "").strip():
        return ""
    try:
        return (Path(instance_path) / STACK_URL_FILE).read_text().strip()
    except OSError:
        return ""


class Config:
    """Settings read from the environment when the app is created."""

    def __init__(self, instance_path: str) -> None:
        production = is_production()
        self.CONSOLE_ENV = "production" if production else "development"
        self.SECRET_KEY = secret_key(instance_path, production)
        # A bulk action over more runs than this is applied by a worker, with live progress.
        self.BULK_INLINE_MAX = env_int("BULK_INLINE_MAX", 200)
        # Earlier keys, newest first, still accepted after a rotation: sessions (Flask), links
        # and webhook URLs made under them keep working until a key is dropped from here.
        self.SECRET_KEY_FALLBACKS = [
            k.strip() for k in os.environ.get("SECRET_KEY_FALLBACKS", "").split(",") if k.strip()
        ]
        # The key secrets are encrypted with (console.secrets.vault): unset, one derived from
        # SECRET_KEY; earlier ones, comma-separated, still read until ``flask secrets rotate``.
        self.SECRETS_KEY = os.environ.get("SECRETS_KEY", "").strip() or None
        self.SECRETS_KEY_FALLBACKS = [
            k.strip() for k in os.environ.get("SECRETS_KEY_FALLBACKS", "").split(",") if k.strip()
        ]
        self.SQLALCHEMY_DATABASE_URI = database_url(instance_path)
        self.REDIS_URL = os.environ.get("REDIS_URL", "").strip() or None
        self.PORT = env_int("PORT", 5000)
        self.BASE_URL = (
            os.environ.get("BASE_URL", "").strip()
            or running_stack_url(instance_path)
            or f"http://127.0.0.1:{self.PORT}"
        ).rstrip("/")
        self.CONSOLE_TIMEZONE = os.environ.get("CONSOLE_TIMEZONE", "UTC")
        self.CONSOLE_ADMIN_EMAIL = os.environ.get("CONSOLE_ADMIN_EMAIL") or None
        self.CONSOLE_ADMIN_PASSWORD = os.environ.get("CONSOLE_ADMIN_PASSWORD") or None
        # Seconds a worker's claim on a run lasts without renewal; the reconciler hands an
        # expired run to another worker, so a dead worker's run resumes within this plus
        # one reconciler interval (docs/runs.md: within 60 seconds).
        self.RUN_LEASE_SECONDS = env_float("RUN_LEASE_SECONDS", 30.0)
        self.RECONCILE_INTERVAL = env_float("RECONCILE_INTERVAL", 5.0)
        self.RUN_QUEUE = os.environ.get("RUN_QUEUE", "runs")
        # "Test this step" jobs from the editor; every worker listens here after the run queue.
        self.TEST_QUEUE = os.environ.get("TEST_QUEUE", "tests")
        self.MAX_PAYLOAD_BYTES = env_int("MAX_PAYLOAD_BYTES", 1024 * 1024)
        # The step sandbox (workers.sandbox.Limits reads these): whom step code runs as when
        # the worker is root, its address-space cap, the largest output or task result, the
        # log bytes kept per execution, and the environment variables it may see.
        self.STEP_USER = os.environ.get("STEP_USER", "nobody").strip()
        self.STEP_MEMORY_MB = env_int("STEP_MEMORY_MB", 1024)
        self.STEP_OUTPUT_MAX_BYTES = env_int("STEP_OUTPUT_MAX_BYTES", 4 * 1024 * 1024)
        self.STEP_LOG_MAX_BYTES = env_int("STEP_LOG_MAX_BYTES", 1024 * 1024)
        self.STEP_ENV_ALLOW = os.environ.get("STEP_ENV_ALLOW", "").strip()
        # Workers that may die while one step executes (each death replays the step) before
        # the run fails instead: a step that kills its worker every time must end.
        self.MAX_STEP_RECOVERIES = env_int("MAX_STEP_RECOVERIES", 3)
        # Operations (docs/operations.md): finished runs older than this many days are pruned
        # by the scheduler (unset: kept forever), their journals archived first under
        # ARCHIVE_DIR; METRICS_TOKEN also opens GET /metrics to a Prometheus server.
        retention = os.environ.get("RUN_RETENTION_DAYS", "").strip()
        self.RUN_RETENTION_DAYS = env_int("RUN_RETENTION_DAYS", 0) if retention else None
        self.ARCHIVE_DIR = os.environ.get("ARCHIVE_DIR", "").strip() or str(
            Path(instance_path) / "archive"
        )
        self.METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip() or None
        # Runs deleted per transaction, and how often the scheduler prunes one batch.
        self.PRUNE_BATCH = env_int("PRUNE_BATCH", 200)
        self.PRUNE_INTERVAL = env_float("PRUNE_INTERVAL", 60.0)
        self.MAX_CONTENT_LENGTH = self.MAX_PAYLOAD_BYTES * 2
        # The largest journal a recovery takes (its routes take bodies up to this size).
        self.JOURNAL_MAX_BYTES = env_int("JOURNAL_MAX_BYTES", 16 * 1024 * 1024)
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = production
        self.WTF_CSRF_TIME_LIMIT = None
        self.SQLALCHEMY_ENGINE_OPTIONS: dict = {}
        # Rate limits, in the notation of the ``limits`` package ("10 per 15 minutes"). Failed
        # logins count per account and per client address; while either is over its limit the
        # login page refuses every attempt (the right password too) with 429.
        self.LOGIN_RATE_LIMIT_ACCOUNT = os.environ.get(
            "LOGIN_RATE_LIMIT_ACCOUNT", "10 per 15 minutes"
        )
        self.LOGIN_RATE_LIMIT_ADDRESS = os.environ.get(
            "LOGIN_RATE_LIMIT_ADDRESS", "30 per 15 minutes"
        )
        # The public demo job service: per client address, and a ceiling for everyone.
        self.DEMO_RATE_LIMIT_ADDRESS = os.environ.get("DEMO_RATE_LIMIT_ADDRESS", "100 per hour")
        self.DEMO_RATE_LIMIT_TOTAL = os.environ.get("DEMO_RATE_LIMIT_TOTAL", "1000 per hour")
        # Behind this many reverse proxies the client address is taken from X-Forwarded-For;
        # 0 (the default, gunicorn facing clients) ignores that header, which clients can forge.
        self.FORWARDED_PROXIES = env_int("FORWARDED_PROXIES", 0)
        self.MAIL_SERVER = os.environ.get("MAIL_SERVER") or None
        self.MAIL_PORT = env_int("MAIL_PORT", 25)
        self.MAIL_USERNAME = os.environ.get("MAIL_USERNAME") or None
        self.MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD") or None
        self.MAIL_USE_TLS = env_bool("MAIL_USE_TLS")
        self.MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "console@localhost")

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k.isupper()}
