"""``peers.dbos``: DBOS Transact's 10-step no-op workflow right beside ours, on the same
SQLite settings, in the same process tree.

DBOS runs in a child process (``bench.dbos_peer``: its own SQLite file with the console's
connection settings, WAL and ``synchronous=NORMAL``), kept alive for the whole measurement.
Each round measures, one after the other so that drift hits all three alike (the order
rotates from round to round):

* DBOS: a batch of sequential workflows of 10 no-op ``@DBOS.step`` steps (the child's own
  timings, so the pipe between the processes is not counted);
* ours in-process: the same number of 10-step no-op runs, ``Runner(run_id).advance()`` as in
  (a), steps in the step sandbox;
* ours through one real worker: a batch of 10-step runs started with ``start_run`` and drained
  by one ``flask worker --burst`` (the rate from the jobs' RQ timestamps, as in (b)).

A round's rate is steps / the batch's total time; the figures are medians over rounds and the
ratios medians of the rounds' ratios. DBOS's replay (re-executing a completed workflow by its
id) is timed too, beside ``replay.run_10_ms``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from typing import IO, Any

from . import throughput
from .harness import ROOT, BenchEnv, log, median
from .inprocess import time_engine_run

STEPS = 10


class Peer:
    """The DBOS child process: one JSON line per command."""

    def __init__(self, env: BenchEnv) -> None:
        self.stderr: IO[bytes] = open(env.logs / "dbos.log", "wb")  # noqa: SIM115
        self.path = env.logs / "dbos.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.dbos_peer", str(env.base / "dbos.sqlite")],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.ready = self.read()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            tail = self.path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the DBOS process exited ({self.proc.returncode}):\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the DBOS process: {answer['error']}")
        return answer

    def ask(self, command: str) -> list[float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return list(self.read()["seconds"])

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def measure_dbos(env: BenchEnv, rounds: int, per_round: int, worker_runs: int) -> dict[str, Any]:
    if importlib.util.find_spec("dbos") is None:
        return {"skipped": "DBOS is not installed: pip install -e '.[bench]' (make bench does)"}
    flow = env.define(f"bench_noop_{STEPS}", STEPS)
    for _ in range(3):
        time_engine_run(env, flow)  # warm-up, as the child warms DBOS up
    peer = Peer(env)
    dbos_rates: list[float] = []
    ours_rates: list[float] = []
    worker_rates: list[float] = []
    dbos_runs: list[float] = []
    ours_runs: list[float] = []
    dbos_replays: list[float] = []
    try:

        def dbos() -> None:
            seconds = peer.ask(f"run {per_round}")
            dbos_runs.extend(seconds)
            dbos_rates.append(STEPS * len(seconds) / sum(seconds))
            dbos_replays.extend(peer.ask(f"replay {per_round}"))

        def ours() -> None:
            seconds = [time_engine_run(env, flow) for _ in range(per_round)]
            ours_runs.extend(seconds)
            ours_rates.append(STEPS * len(seconds) / sum(seconds))

        def worker() -> None:
            res = throughput.batch(env, "engine", False, 1, worker_runs, flow)
            worker_rates.append(STEPS * res["steady_per_s"])

        parts = [dbos, ours, worker]
        for r in range(rounds):
            for part in parts[r % 3 :] + parts[: r % 3]:
                part()
            log(
                f"    DBOS round {r + 1}/{rounds}: DBOS {dbos_rates[-1]:.0f} steps/s, ours "
                f"{ours_rates[-1]:.0f} in-process, {worker_rates[-1]:.0f} through a worker"
            )
    finally:
        peer.close()
    return {
        "version": peer.ready["version"],
        "steps_per_s": median(dbos_rates),
        "ours_steps_per_s": median(ours_rates),
        "ours_worker_steps_per_s": median(worker_rates),
        "ratio": median([o / d for o, d in zip(ours_rates, dbos_rates, strict=True)]),
        "worker_ratio": median([w / d for w, d in zip(worker_rates, dbos_rates, strict=True)]),
        "settings": peer.ready["settings"],
        "steps": STEPS,
        "rounds": rounds,
        "workflows_per_round": per_round,
        "worker_runs_per_round": worker_runs,
        "p50_ms": median(dbos_runs) * 1e3,
        "ours_p50_ms": median(ours_runs) * 1e3,
        "replay_10_ms": median(dbos_replays) * 1e3,
        "rates_by_round": {
            "dbos": [round(x) for x in dbos_rates],
            "ours": [round(x) for x in ours_rates],
            "ours_worker": [round(x) for x in worker_rates],
        },
    }
