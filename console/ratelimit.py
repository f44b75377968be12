"""Rate limits (Flask-Limiter) kept in the console's Redis.

Two users: the login form, which counts failed logins per account and per client address
(``console.auth``), and the public demo job service, limited per client address with a ceiling
for everyone (``console.demo.routes``).

When Redis is unreachable the limits are not enforced (logged, the request goes on): logins
must keep working while Redis is down, and an in-memory fallback would be a different limit in
every gunicorn process anyway.
"""

from __future__ import annotations

import hashlib
import logging
import time

from flask import Flask, current_app, request
from limits import RateLimitItem, parse
from werkzeug.middleware.proxy_fix import ProxyFix

from .extensions import limiter
from .queueing import redis_url
from .redis_server import socket_path

log = logging.getLogger(__name__)

LIMIT_SETTINGS = (
    "LOGIN_RATE_LIMIT_ACCOUNT",
    "LOGIN_RATE_LIMIT_ADDRESS",
    "DEMO_RATE_LIMIT_ADDRESS",
    "DEMO_RATE_LIMIT_TOTAL",
)


def storage_uri(app: Flask) -> str:
    """The app's Redis in the ``limits`` notation, which spells a unix socket
    ``redis+unix://``. Computed without starting the embedded Redis (``create_app`` runs for
    every command); a request that uses a limit starts it (``queueing.redis_url``)."""
    url = app.config.get("REDIS_URL") or f"unix://{socket_path(app.instance_path)}"
    if url.startswith("unix://"):
        return "redis+" + url
    return str(url)


def init_app(app: Flask) -> None:
    for name in LIMIT_SETTINGS:
        try:
            parse(app.config[name])
        except ValueError:
            raise RuntimeError(
                f"{name} must be a rate limit such as '10 per 15 minutes', got {app.config[name]!r}"
            )
    # Consoles sharing one Redis keep their counts apart.
    digest = hashlib.sha1(app.instance_path.encode()).hexdigest()[:10]
    app.config.setdefault("RATE_LIMIT_PREFIX", f"console-{digest}")
    app.config.setdefault("RATELIMIT_STORAGE_URI", storage_uri(app))
    app.config.setdefault("RATELIMIT_STRATEGY", "moving-window")
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
    proxies = int(app.config.get("FORWARDED_PROXIES") or 0)
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)  # type: ignore[method-assign]


def client_address() -> str:
    return request.remote_addr or "unknown"


def scoped(*parts: str) -> str:
    """A limit key of this console (Flask-Limiter's own key prefix is fixed by the first app
    that a process creates, so the prefix goes into the key instead)."""
    return "/".join((current_app.config["RATE_LIMIT_PREFIX"], *parts))


def demo_address_key() -> str:
    return scoped("demo", client_address())


def demo_total_key() -> str:
    return scoped("demo", "everyone")


# ------------------------------------------------------------------ counting failures
#
# Only failures count, so that someone who logs in and out often is never locked out. A limit
# is tested before the password is checked and hit after it failed: concurrent guesses can pass
# the test together, so an account sees at most its limit plus the server's concurrency
# (gunicorn's workers × threads) failures per window.


def _items(keys: dict[str, str]) -> list[tuple[RateLimitItem, str]]:
    return [(parse(current_app.config[setting]), scoped(key)) for setting, key in keys.items()]


def retry_after(keys: dict[str, str]) -> int | None:
    """Seconds until the first limit over its count frees a place; None when every limit
    allows another attempt (or Redis is unreachable)."""
    try:
        redis_url()  # starts the embedded Redis when it is not running yet
        for item, key in _items(keys):
            if not limiter.limiter.test(item, key):
                reset_at, _remaining = limiter.limiter.get_window_stats(item, key)
                return max(1, int(reset_at - time.time()) + 1)
    except Exception as exc:  # whatever the store's trouble (it may not even start), log in
        log.warning("rate limits not checked: Redis is unreachable (%s)", exc)
    return None


def count_failure(keys: dict[str, str]) -> None:
    try:
        for item, key in _items(keys):
            limiter.limiter.hit(item, key)
    except Exception as exc:
        log.warning("failure not counted: Redis is unreachable (%s)", exc)
