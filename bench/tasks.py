"""(d) The Tasks page at 1,000,000 runs, on SQLite and on PostgreSQL.

Seeds the runs in bulk on the driver (``executemany`` in transactions of 50,000 rows on
SQLite, ``COPY`` on PostgreSQL): 8 workflows, every status, ids spread over 30 days as the app
would have made them, suspended runs with an open approval and a deadline, and decided
approvals for 12 % of the completed runs. Then it times the pages as a logged-in viewer
through the Flask test client, so rendering, the session and the user load are included: the
Tasks page, each filter, deep cursor pages, the counts, Approvals and the two live polls.
PostgreSQL is the benchmark's throwaway cluster (``bench.pg``); without PostgreSQL's
binaries it is skipped with a note. ``--quick`` seeds fewer runs, and the results say so.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from console import create_app
from console.auth import create_user
from console.definitions import save_workflow
from console.extensions import db
from console.ids import ALPHABET, time_part
from console.tasks import queries
from console.tasks.story import run_stamp

from .harness import log, median

RUNS = 1_000_000  # the scale of the aim; ``--quick`` seeds fewer and says so
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


RUN_COLUMNS = [
    "id",
    "workflow_id",
    "version_id",
    "status",
    "trigger",
    "input",
    "output",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "compute_ms",
    "current_step",
    "step_count",
    "paused_from",
    "updated_at",
    "replays",
    "recoveries",
]
WAIT_COLUMNS = [
    "id",
    "run_id",
    "step_name",
    "runs",
    "kind",
    "resume_hash",
    "cancel_hash",
    "created_at",
    "expires_at",
    "state",
]
CHUNK = 50_000
EPOCH = datetime(1970, 1, 1)  # naive UTC, as ``UTCDateTime`` stores times
TRIGGERS = ["manual", "api", "webhook", "schedule:nightly"]


class Stamps:
    """Fast, cached text for what a million rows need: a UTC time as both databases take it
    (SQLAlchemy's SQLite format, naive UTC as ``UTCDateTime`` stores it) and an id's time
    part (``console.ids.time_part``), each from parts that repeat across rows."""

    def __init__(self) -> None:
        self.minutes: dict[int, str] = {}
        self.heads: dict[int, str] = {}
        # The last 4 characters: the low 20 bits, 5 bits a character, in counting order.
        self.tails = [
            a + b + c + d for a in ALPHABET for b in ALPHABET for c in ALPHABET for d in ALPHABET
        ]

    def time(self, ms: int) -> str:
        minute = ms // 60_000
        head = self.minutes.get(minute)
        if head is None:
            head = self.minutes[minute] = (EPOCH + timedelta(minutes=minute)).strftime(
                "%Y-%m-%d %H:%M:"
            )
        rest = ms % 60_000
        return f"{head}{rest // 1000:02d}.{rest % 1000:03d}000"

    def id_time(self, ms: int) -> str:
        high = ms >> 20
        head = self.heads.get(high)
        if head is None:
            head = self.heads[high] = time_part(ms)[:-4]
        return head + self.tails[ms & 0xFFFFF]


def define_flows() -> list[tuple[int, int, int, str]]:
    flows = []
    for i in range(WORKFLOWS):
        steps = [
            {"name": f"step_{k}", "code": "def run(ctx):\n    return 1\n"} for k in range(3 + i % 3)
        ]
        workflow, version, _ = save_workflow({"name": f"bench_flow_{i}", "steps": steps})
        assert version is not None
        flows.append((workflow.id, version.id, len(steps), workflow.name))
    db.session.commit()
    return flows


def generate(
    runs: int, rng: random.Random, flows: list[tuple[int, int, int, str]], now: datetime
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Chunks of (run rows, waitpoint rows) in ``RUN_COLUMNS``/``WAIT_COLUMNS`` order, oldest
    first: creation times stratified over ``DAYS`` (so ids come sorted), statuses by
    ``STATUS_WEIGHTS``, ids as ``console.ids.new_id`` makes them for those times."""
    start_ms = int((now - timedelta(days=DAYS)).timestamp() * 1000)
    slot = DAYS * 86_400_000 / runs
    by_percent = [s for s, w in STATUS_WEIGHTS.items() for _ in range(w)]
    assert len(by_percent) == 100
    now_ms = int(now.timestamp() * 1000)
    stamps = Stamps()
    rows: list[tuple[Any, ...]] = []
    waits: list[tuple[Any, ...]] = []
    for i in range(runs):
        ms = start_ms + int(i * slot + rng.random() * slot)
        workflow_id, version_id, n, _ = flows[int(rng.random() * WORKFLOWS)]
        status = by_percent[int(rng.random() * 100)]
        terminal = status in ("completed", "failed", "canceled")
        # 16 hex digits: characters of the ids' alphabet (64 random bits are plenty here).
        rid = stamps.id_time(ms) + f"{rng.getrandbits(64):016x}"
        paused_from = "suspended" if status == "paused" and rng.random() < 0.3 else None
        created, finished = stamps.time(ms), stamps.time(ms + 30_000)
        rows.append(
            (
                rid,
                workflow_id,
                version_id,
                status,
                TRIGGERS[int(rng.random() * 4)],
                f'{{"n": {ms % 1000}}}',
                '{"ok": true}' if status == "completed" else None,
                "Traceback ...\nRuntimeError: boom" if status == "failed" else None,
                created,
                stamps.time(ms + 1000),
                finished if terminal else None,
                rng.randrange(50, 20_000),
                n if terminal else int(rng.random() * n),
                n,
                paused_from,
                finished,
                0,
                0,
            )
        )
        open_wait = status == "suspended" or paused_from == "suspended"
        if open_wait or (status == "completed" and rng.random() < 0.12):
            waits.append(
                (
                    f"{rng.getrandbits(128):032x}",
                    rid,
                    "step_1",
                    1,
                    "suspend",
                    f"{rng.getrandbits(256):064x}",
                    f"{rng.getrandbits(256):064x}",
                    created,
                    stamps.time(now_ms + rng.randrange(1, 20_000) * 60_000),
                    "open" if open_wait else "resumed",
                )
            )
        if len(rows) == CHUNK:
            yield rows, waits
            rows, waits = [], []
    if rows:
        yield rows, waits


def bulk_insert(table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """One transaction per chunk on the driver: ``executemany`` on SQLite, ``COPY`` on
    PostgreSQL (the ORM's per-row work would dominate a million rows)."""
    raw = db.engine.raw_connection()
    try:
        if db.engine.dialect.name == "postgresql":
            conn = raw.driver_connection
            assert conn is not None
            with conn.cursor() as cur:
                sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
                with cur.copy(sql) as copy:
                    for row in rows:
                        copy.write_row(row)
            conn.commit()
        else:
            cur = raw.cursor()
            marks = ", ".join("?" for _ in columns)
            cur.execute("BEGIN")  # the engine's connections are in autocommit mode
            cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            cur.execute("COMMIT")
            cur.close()
    finally:
        raw.close()


def seed(runs: int, rng: random.Random) -> dict[str, Any]:
    """Bulk-insert the runs and waitpoints; returns facts the measurements need: the ids at
    the positions the pages are asked about (0 = oldest), and counts."""
    flows = define_flows()
    now = datetime.now(UTC)
    wanted = {runs // 10, runs // 3, runs // 2, max(runs - 90_000, 0), runs // 10, runs - 1}
    ids: dict[int, str] = {}
    waits = open_waits = position = 0
    for rows, wait_rows in generate(runs, rng, flows, now):
        bulk_insert("runs", RUN_COLUMNS, rows)
        bulk_insert("waitpoints", WAIT_COLUMNS, wait_rows)
        for k in wanted:
            if position <= k < position + len(rows):
                ids[k] = rows[k - position][0]
        position += len(rows)
        waits += len(wait_rows)
        open_waits += sum(1 for w in wait_rows if w[-1] == "open")
    return {
        "ids": ids,
        "workflow": flows[3][3],
        "waits": waits,
        "open_waits": open_waits,
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


def prepare(label: str, url: str, analyzed: bool, runs: int) -> dict[str, Any]:
    """Seed one database (unmeasured work: ``python -m bench`` lets the memory batch of the
    live stack drain meanwhile)."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        db.create_all()
        started = time.perf_counter()
        facts = seed(runs, random.Random(5))
        facts["seed_s"] = seed_s = time.perf_counter() - started
        log(f"  {label}: seeded {runs:,} runs and {facts['waits']:,} waitpoints in {seed_s:.0f} s")
        if analyzed:
            analyse()
        create_user("bench@example.com", "viewer", "bench-pass")
        db.session.remove()
        db.engine.dispose()
    return {"label": label, "url": url, "runs": runs, "facts": facts}


def measure(prepared: dict[str, Any], reps: int) -> dict[str, Any]:
    """Time every page, filter, poll and query on a seeded database."""
    runs, facts = prepared["runs"], prepared["facts"]
    app = create_app({"SQLALCHEMY_DATABASE_URI": prepared["url"], "WTF_CSRF_ENABLED": False})
    figures: dict[str, float] = {}
    with app.app_context():
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
            "  search: run id prefix (12 chars)": f"/tasks?q={ids[runs // 3][:12]}",
            "  search: full run id": f"/tasks?q={ids[runs // 2]}",
            "  deep page: cursor at the 90,000th newest": (
                f"/tasks?before={ids[max(runs - 90_000, 0)]}"
            ),
            "  deep page: cursor 90 % deep": f"/tasks?before={ids[runs // 10]}",
            "  deep page + status=completed": f"/tasks?status=completed&before={ids[runs // 10]}",
            "  board alone (htmx filter swap)": "/tasks?status=failed",
            "Approvals, first page (50 soonest deadlines)": "/approvals",
            "run page": f"/runs/{ids[runs - 1]}",
        }
        for name, path in cases.items():
            figures[name] = timed(page(path), reps)
        figures["live poll: 25 cards + new runs, nothing changed (204)"] = timed(
            page(poll, 204), reps
        )
        newest_stamp = run_stamp(ids[runs - 1])
        figures["run page poll, nothing changed (204)"] = timed(
            page(f"/runs/{ids[runs - 1]}/live?stamp={newest_stamp}", 204), reps
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
    return {
        "figures": figures,
        "open_approvals": facts["open_waits"],
        "runs": runs,
        "waitpoints": facts["waits"],
        "seed_s": facts["seed_s"],
    }


def prepare_tasks(instance: Path, runs: int, server: Any) -> dict[str, Any]:
    """Seed (d)'s SQLite database, and a PostgreSQL one when ``server`` (a ``bench.pg``
    cluster) is given."""
    log(f"(d) seeding {runs:,} runs: SQLite ...")
    prepared: dict[str, Any] = {
        "runs": runs,
        "sqlite": prepare("SQLite", f"sqlite:///{instance / 'tasks.db'}", False, runs),
    }
    if server is not None:
        log(f"(d) seeding {runs:,} runs: PostgreSQL ...")
        prepared["postgresql"] = prepare(
            "PostgreSQL", server.create_database("bench_tasks"), True, runs
        )
    return prepared


def measure_tasks(prepared: dict[str, Any], reps: int) -> dict[str, Any]:
    """(d) on the databases ``prepare_tasks`` seeded."""
    runs = prepared["runs"]
    results: dict[str, Any] = {"aim_ms": AIM_MS, "reps": reps, "runs": runs}
    if runs < RUNS:
        results["note"] = f"--quick: {runs:,} runs, not the aim's {RUNS:,}"
    log(f"(d) Tasks page at {runs:,} runs: SQLite ...")
    results["sqlite"] = measure(prepared["sqlite"], reps)
    if "postgresql" in prepared:
        log(f"(d) Tasks page at {runs:,} runs: PostgreSQL ...")
        results["postgresql"] = measure(prepared["postgresql"], reps)
    else:
        results["postgresql"] = None
        results["postgresql_note"] = "skipped: PostgreSQL's binaries were not found"
    return results
