"""The processes of ``flask up``: the web process's command line and the supervisor that runs
the stack's processes on one machine."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Any

import click

from console.redis_server import embedded_alive, ensure_embedded


def web_command(gunicorn: str, bind: str) -> list[str]:
    """The web process, as the Procfile runs it: gunicorn's settings (the access log without
    secrets, the control socket in the instance folder, keepalive) are in one module."""
    return [gunicorn, "-c", "python:console.gunicorn_conf", "--bind", bind, "console:create_app()"]


class Supervisor:
    """Runs the stack's processes, restarts any that exits unexpectedly, and (``redis``: the
    instance folder of an embedded Redis that ``flask up`` owns) restarts that Redis when it
    dies; the database is the truth, so runs in flight go on and the reconciler re-enqueues
    what the restarted Redis lost.

    Each process has a process group of its own: a Ctrl+C reaches only this process, which
    stops the others in order. On stop each gets SIGTERM (a worker then kills its hanging
    step and gives the run back), and ``STOP_GRACE`` seconds later what is left of its group
    is killed, so that the whole stack is gone within 15 seconds.
    """

    STOP_GRACE = 10.0
    TICK = 0.25
    REDIS_CHECK = 1.0

    def __init__(
        self, commands: dict[str, list[str]], env: dict[str, str], redis: str | None = None
    ) -> None:
        self.commands = commands
        self.env = env
        self.redis = redis
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, list[float]] = {name: [] for name in commands}
        self.due: dict[str, float] = {}  # processes waiting out their restart delay
        self.stopping = False

    def start(self, name: str) -> None:
        self.procs[name] = subprocess.Popen(self.commands[name], env=self.env, process_group=0)

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for name in self.commands:
            self.start(name)
        next_redis_check = time.monotonic() + self.REDIS_CHECK
        try:
            while not self.stopping:
                time.sleep(self.TICK)
                if self.redis is not None and time.monotonic() >= next_redis_check:
                    self.keep_redis(self.redis)
                    next_redis_check = time.monotonic() + self.REDIS_CHECK
                self.restart_exited()
        finally:
            self.stop_all()

    def restart_exited(self) -> None:
        now = time.monotonic()
        for name, proc in list(self.procs.items()):
            if self.stopping:
                return
            if name in self.due:
                if now >= self.due[name]:
                    del self.due[name]
                    self.restarts[name].append(now)
                    self.start(name)
                continue
            code = proc.poll()
            if code is None:
                continue
            recent = [t for t in self.restarts[name] if now - t < 60]
            self.restarts[name] = recent
            delay = min(30, 2 ** len(recent))
            click.echo(f"{name} exited with {code}; restarting in {delay}s", err=True)
            self.due[name] = now + delay

    def keep_redis(self, instance: str) -> None:
        if embedded_alive(instance) or self.stopping:
            return
        click.echo("The embedded Redis stopped; starting it again.", err=True)
        try:
            ensure_embedded(instance)
        except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            click.echo(f"The embedded Redis did not start again ({exc}); retrying.", err=True)

    def stop_all(self) -> None:
        live = [p for p in self.procs.values() if p.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.STOP_GRACE
        for proc in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        # Whatever is left, and what the processes started in their groups (gunicorn's
        # workers), is killed; a worker's zygote and step processes end with the worker.
        for proc in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
