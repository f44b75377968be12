"""The processes of ``flask up``: the web process's command line and the supervisor that runs
the stack's processes on one machine."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any

import click


def web_command(gunicorn: str, bind: str) -> list[str]:
    """The web process, as the Procfile runs it: gunicorn's settings (the access log without
    secrets, the control socket in the instance folder, keepalive) are in one module."""
    return [gunicorn, "-c", "python:console.gunicorn_conf", "--bind", bind, "console:create_app()"]


class Supervisor:
    """Runs the stack's processes and restarts any that exits unexpectedly."""

    def __init__(self, commands: dict[str, list[str]], env: dict[str, str]) -> None:
        self.commands = commands
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, list[float]] = {name: [] for name in commands}
        self.stopping = False

    def start(self, name: str) -> None:
        self.procs[name] = subprocess.Popen(self.commands[name], env=self.env)

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for name in self.commands:
            self.start(name)
        try:
            while not self.stopping:
                time.sleep(0.5)
                for name, proc in list(self.procs.items()):
                    code = proc.poll()
                    if code is None or self.stopping:
                        continue
                    recent = [t for t in self.restarts[name] if time.monotonic() - t < 60]
                    delay = min(30, 2 ** len(recent))
                    click.echo(f"{name} exited with {code}; restarting in {delay}s", err=True)
                    time.sleep(delay)
                    self.restarts[name] = recent + [time.monotonic()]
                    self.start(name)
        finally:
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 20
            for proc in self.procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
