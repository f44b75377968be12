"""(d) The Tasks page at 100,000 runs, on SQLite and on PostgreSQL.

Seeds 100,000 runs (bulk inserts: 8 workflows, every status, ids spread over 30 days as the
app would have made them; suspended runs with an open approval and a deadline, 10,000 older
decided approvals) and times the pages as a logged-in viewer through the Flask test client,
so rendering, the session and the user load are included: the Tasks page, each filter, a deep
cursor page, the counts, Approvals and the two live polls. PostgreSQL is a throwaway cluster
(``tests.pgserver``); without PostgreSQL's binaries it is skipped with a note.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from console import create_app
from console.auth import create_user
from console.definitions import save_workflow
from console.extensions import db
from console.ids import ALPHABET, time_part
from console.models import Run, Waitpoint
from console.tasks import queries
from console.tasks.story import run_stamp

from .harness import log, median

RUNS = 100_000
WORKFLOWS = 8
DAYS = 30
STATUS_WEIGHTS = {
    "completed": 85,
    "failed": 5,
    "canceled": 3,
    "running": 1,
    "pending": 1,
    "sleeping": 2,
    "suspended": 2,
    "paused": 1,
}
AIM_MS = 100.0  # "well under 100 ms"


def run_id(millis: int, rng: random.Random) -> str:
    """A run id as ``console.ids.new_id`` makes it, for a given creation time."""
    return time_part(millis) + "".join(rng.choice(ALPHABET) for _ in range(16))


def seed(runs: int, rng: random.Random) -> dict[str, Any]:
    """Bulk-insert the runs and waitpoints; returns facts the measurements need."""
    flows = []
    for i in range(WORKFLOWS):
        steps = [
            {"name": f"step_{k}", "code": "def run(ctx):\n    return 1\n"} for k in range(3 + i % 3)
        ]
        workflow, version, _ = save_workflow({"name": f"bench_flow_{i}", "steps": steps})
        assert version is not None
        flows.append((workflow.id, version.id, len(steps), workflow.name))
    db.session.commit()
    now = datetime.now(UTC)
    start_ms = int((now - timedelta(days=DAYS)).timestamp() * 1000)
    span_ms = DAYS * 86_400_000
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    millis = sorted(start_ms + rng.randrange(span_ms) for _ in range(runs))
    rows, waits = [], []
    for ms in millis:
        created = datetime.fromtimestamp(ms / 1000, UTC)
        workflow_id, version_id, n, _ = rng.choice(flows)
        status = rng.choices(statuses, weights)[0]
        terminal = status in ("completed", "failed", "canceled")
        rid = run_id(ms, rng)
        rows.append(
            {
                "id": rid,
                "workflow_id": workflow_id,
                "version_id": version_id,
                "status": status,
                "trigger": rng.choice(["manual", "api", "webhook", "schedule:nightly"]),
                "input": {"n": ms % 1000},
                "output": {"ok": True} if status == "completed" else None,
                "error": "Traceback ...\nRuntimeError: boom" if status == "failed" else None,
                "created_at": created,
                "started_at": created + timedelta(seconds=1),
                "finished_at": created + timedelta(seconds=30) if terminal else None,
                "compute_ms": rng.randrange(50, 20_000),
                "current_step": n if terminal else rng.randrange(n),
                "step_count": n,
                "paused_from": "suspended" if status == "paused" and rng.random() < 0.3 else None,
                "updated_at": created + timedelta(seconds=30),
                "replays": 0,
            }
        )
        open_wait = status == "suspended" or rows[-1]["paused_from"] == "suspended"
        if open_wait or (status == "completed" and rng.random() < 0.12):
            waits.append(
                {
                    "id": secrets.token_hex(16),
                    "run_id": rid,
                    "step_name": "step_1",
                    "runs": 1,
                    "kind": "suspend",
                    "resume_hash": secrets.token_hex(32),
                    "cancel_hash": secrets.token_hex(32),
                    "created_at": created,
                    "expires_at": now + timedelta(minutes=rng.randrange(1, 20_000)),
                    "state": "open" if open_wait else "resumed",
                }
            )
    for table, data in ((Run.__table__, rows), (Waitpoint.__table__, waits)):
        for i in range(0, len(data), 5000):
            db.session.execute(insert(table), data[i : i + 5000])
            db.session.commit()
    ordered = sorted(r["id"] for r in rows)
    return {
        "ids": ordered,
        "workflow": flows[3][3],
        "waits": len(waits),
        "open_waits": sum(1 for w in waits if w["state"] == "open"),
        "now": now,
    }


def analyse() -> None:
    """What a production database has after autovacuum (PostgreSQL) or ``PRAGMA optimize``."""
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        db.session.execute(text("ANALYZE"))
        db.session.commit()


def timed(fn: Callable[[], Any], reps: int) -> float:
    fn()  # warm: the version cache, the statement cache, the pages in memory
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return median(samples)


def measure(label: str, url: str, reps: int, analyzed: bool) -> dict[str, Any]:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "WTF_CSRF_ENABLED": False})
    figures: dict[str, float] = {}
    with app.app_context():
        db.create_all()
        rng = random.Random(5)
        started = time.perf_counter()
        facts = seed(RUNS, rng)
        log(
            f"  {label}: seeded {RUNS} runs and {facts['waits']} waitpoints "
            f"in {time.perf_counter() - started:.0f} s"
        )
        if analyzed:
            analyse()
        create_user("bench@example.com", "viewer", "bench-pass")
        client = app.test_client()
        client.post("/login", data={"email": "bench@example.com", "password": "bench-pass"})
        ids = facts["ids"]
        mid = facts["now"] - timedelta(days=DAYS / 2)

        def page(path: str, expect: int = 200) -> Callable[[], None]:
            def get() -> None:
                response = client.get(path)
                assert response.status_code == expect, (path, response.status_code)

            return get

        first = client.get("/tasks").get_data(as_text=True)
        assert "run-card" in first, "the Tasks page shows no cards"
        stamps = re.findall(r'data-run="([0-9a-z]{26})" data-stamp="([^"]+)"', first)
        live = [(r, s) for r, s in stamps][:25]
        poll = "/tasks/updates?v=" + ",".join(f"{r}~{s}" for r, s in live)
        poll += f"&newest={max(r for r, _ in stamps)}"
        day = (mid.strftime("%Y-%m-%dT%H:%M"), (mid + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))
        cases = {
            "Tasks page, first page (25 cards, counts)": "/tasks",
            "  filter: status=running (1%)": "/tasks?status=running",
            "  filter: status=completed (85%)": "/tasks?status=completed",
            "  filter: status=active (8%)": "/tasks?status=active",
            "  filter: workflow": f"/tasks?workflow={facts['workflow']}",
            "  filter: workflow + status=failed": (
                f"/tasks?workflow={facts['workflow']}&status=failed"
            ),
            "  filter: last 24 hours": "/tasks?range=24h",
            "  filter: one day, 15 days ago (UTC)": f"/tasks?start={day[0]}&end={day[1]}&tz=UTC",
            "  search: run id prefix (12 chars)": f"/tasks?q={ids[RUNS // 3][:12]}",
            "  search: full run id": f"/tasks?q={ids[RUNS // 2]}",
            "  deep page: cursor at the 90,000th newest": f"/tasks?before={ids[RUNS - 90_000]}",
            "  deep page + status=completed": f"/tasks?status=completed&before={ids[RUNS // 10]}",
            "  board alone (htmx filter swap)": "/tasks?status=failed",
            "Approvals, first page (50 soonest deadlines)": "/approvals",
            "run page": f"/runs/{ids[-1]}",
        }
        for name, path in cases.items():
            figures[name] = timed(page(path), reps)
        figures["live poll: 25 cards + new runs, nothing changed (204)"] = timed(
            page(poll, 204), reps
        )
        stamp = run_stamp(ids[-1])
        figures["run page poll, nothing changed (204)"] = timed(
            page(f"/runs/{ids[-1]}/live?stamp={stamp}", 204), reps
        )
        f = queries.parse_filters({})
        figures["query: counts per status, no filter"] = timed(
            lambda: queries.status_counts(f), reps
        )
        wf = queries.parse_filters({"workflow": facts["workflow"]})
        figures["query: counts per status, one workflow"] = timed(
            lambda: queries.status_counts(wf), reps
        )
        figures["query: first page of cards"] = timed(lambda: queries.page_of_runs(f, None), reps)
        figures["query: approvals, first page"] = timed(queries.approvals, reps)
        newest = max(r for r, _ in stamps)
        figures["query: live poll (25 ids + newer runs, one query)"] = timed(
            lambda: queries.poll(dict(live), newest, f), reps
        )
        db.session.remove()
        db.engine.dispose()
    return {"figures": figures, "open_approvals": facts["open_waits"], "runs": RUNS}


@contextmanager
def postgres() -> Iterator[str | None]:
    from tests.pgserver import PostgresServer, pg_bin

    try:
        pg_bin("initdb")
    except RuntimeError as exc:
        log(f"  PostgreSQL skipped: {exc}")
        yield None
        return
    base = Path(tempfile.mkdtemp(prefix="console-bench-pg-"))
    server = PostgresServer(base, port=55400 + os.getpid() % 90)
    try:
        server.start()
        yield server.create_database("bench_tasks")
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def measure_tasks(instance: Path, reps: int) -> dict[str, Any]:
    results: dict[str, Any] = {"aim_ms": AIM_MS, "reps": reps}
    log("(d) Tasks page at 100,000 runs: SQLite ...")
    results["sqlite"] = measure("SQLite", f"sqlite:///{instance / 'tasks.db'}", reps, False)
    log("(d) Tasks page at 100,000 runs: PostgreSQL ...")
    with postgres() as url:
        if url is None:
            results["postgresql"] = None
            results["postgresql_note"] = "skipped: PostgreSQL's binaries were not found"
        else:
            results["postgresql"] = measure("PostgreSQL", url, reps, True)
    return results
