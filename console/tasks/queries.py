"""The read side of the Tasks page: filters from the query string, a page of run cards by
cursor, counts per status, the Approvals list and the live poll (the run page's read is in
``story``).

Every query reads the ``runs`` table through an index (see ``RunFilter``) and only the
columns a card shows; the workflow name, version label and step names of a card come from
an in-process cache, since a published version never changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app
from sqlalchemy import and_, func, or_, select, union_all

from .. import runs as domain
from ..extensions import db
from ..links import links_visible, mask_links
from ..models import (
    RUN_STATUSES,
    TERMINAL,
    OutboxMessage,
    Run,
    Waitpoint,
    Workflow,
    WorkflowVersion,
)
from ..timeutil import isoformat, utcnow

PAGE_SIZE = 25
APPROVALS_PAGE = 50
RUN_ID_RE = re.compile(r"^[0-9a-z]{26}$")
ID_PREFIX_RE = re.compile(r"^[0-9a-z]{1,26}$")
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
CARD_COLUMNS = (
    Run.id,
    Run.workflow_id,
    Run.version_id,
    Run.status,
    Run.trigger,
    Run.created_at,
    Run.started_at,
    Run.finished_at,
    Run.compute_ms,
    Run.current_step,
    Run.step_count,
    Run.paused_from,
    Run.wake_at,
    Run.error,
    Run.updated_at,
)


# ------------------------------------------------------------------------------ versions


@dataclass(frozen=True)
class VersionInfo:
    workflow: str
    title: str
    label: str
    steps: tuple[str, ...]


_VERSIONS: dict[tuple[str, int], VersionInfo] = {}


def version_infos(version_ids: set[int]) -> dict[int, VersionInfo]:
    """Workflow name, label and step names of these versions (cached: versions are frozen)."""
    key = str(db.engine.url)
    missing = [v for v in version_ids if (key, v) not in _VERSIONS]
    if missing:
        rows = db.session.execute(
            select(WorkflowVersion.id, WorkflowVersion.label, WorkflowVersion.definition)
            .add_columns(Workflow.name, Workflow.title)
            .join(Workflow, Workflow.id == WorkflowVersion.workflow_id)
            .where(WorkflowVersion.id.in_(missing))
        ).all()
        if len(_VERSIONS) > 5000:
            _VERSIONS.clear()
        for row in rows:
            steps = tuple(s["name"] for s in row.definition.get("steps", []))
            _VERSIONS[(key, row.id)] = VersionInfo(row.name, row.title, row.label, steps)
    return {v: _VERSIONS[(key, v)] for v in version_ids if (key, v) in _VERSIONS}


# ------------------------------------------------------------------------------- filters


@dataclass
class Filters:
    """The Tasks page's filters as the user gave them, and the ``RunFilter`` they mean."""

    status: str = ""
    workflow: str = ""
    range: str = ""
    start: str = ""
    end: str = ""
    tz: str = ""
    q: str = ""
    problems: list[str] = field(default_factory=list)
    run_filter: domain.RunFilter = field(default_factory=domain.RunFilter)
    impossible: bool = False  # e.g. an unknown workflow: nothing can match

    def args(self, **changes: str) -> dict[str, str]:
        """Query-string arguments for a link that keeps these filters (``changes`` win)."""
        values = {
            "status": self.status,
            "workflow": self.workflow,
            "range": self.range,
            "start": self.start,
            "end": self.end,
            "tz": self.tz,
            "q": self.q,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v}

    @property
    def active(self) -> bool:
        return bool(self.args(tz=""))


def _zone(name: str) -> ZoneInfo:
    for candidate in (name, current_app.config.get("CONSOLE_TIMEZONE") or "UTC"):
        try:
            return ZoneInfo(candidate) if candidate else ZoneInfo("UTC")
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def _local_time(value: str, zone: ZoneInfo) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def parse_filters(args: Any) -> Filters:
    def arg(name: str) -> str:
        return str(args.get(name) or "").strip()

    f = Filters(
        status=arg("status"),
        workflow=arg("workflow"),
        range=arg("range"),
        start=arg("start"),
        end=arg("end"),
        tz=arg("tz"),
        q=arg("q").lower(),
    )
    statuses: tuple[str, ...] = ()
    if f.status == "active":
        statuses = tuple(s for s in RUN_STATUSES if s not in TERMINAL)
    elif f.status in RUN_STATUSES:
        statuses = (f.status,)
    elif f.status:
        f.problems.append(f"Unknown status {f.status!r}.")
        f.status = ""
    workflow_id = None
    if f.workflow:
        workflow_id = db.session.scalar(select(Workflow.id).where(Workflow.name == f.workflow))
        if workflow_id is None:
            f.problems.append(f"No workflow named {f.workflow!r}.")
            f.impossible = True
    lows: list[str] = []
    highs: list[str] = []
    if f.range in RANGES:
        lows.append(domain.id_bound(utcnow() - RANGES[f.range], "0"))
    elif f.range:
        f.range = ""
    zone = _zone(f.tz)
    for name, fill, bounds in (("start", "0", lows), ("end", "z", highs)):
        value = getattr(f, name)
        if not value:
            continue
        try:
            bounds.append(domain.id_bound(_local_time(value, zone), fill))
        except ValueError:
            f.problems.append(f"{name.capitalize()} time {value!r} is not a date and time.")
            setattr(f, name, "")
    if f.q:
        if ID_PREFIX_RE.match(f.q):
            lows.append(f.q.ljust(26, "0"))
            highs.append(f.q.ljust(26, "z"))
        else:
            f.problems.append(f"{f.q!r} is not a run id: ids are 26 letters and digits (0-9, a-z).")
            f.impossible = True
    f.run_filter = domain.RunFilter(
        statuses=statuses,
        workflow_id=workflow_id,
        id_min=max(lows) if lows else None,
        id_max=min(highs) if highs else None,
    )
    return f


# --------------------------------------------------------------------------------- cards


@dataclass
class Card:
    """What a run card shows; built from a row of ``CARD_COLUMNS``."""

    id: str
    status: str
    trigger: str
    workflow: str
    title: str
    version: str
    current_step: int
    step_count: int
    step_name: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    compute_ms: int
    paused_from: str | None
    wake_at: str | None
    error: str | None
    stamp: str
    actions: tuple[str, ...] = ()
    deadline: str | None = None
    waiting_step: str | None = None
    # Pending for a concurrency slot: (runs holding one, the workflow's limit).
    slots: tuple[int, int] | None = None
    # The email the waiting step sent, so that the decision is made knowing what was asked.
    email: ApprovalEmail | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def done_steps(self) -> int:
        # A suspended step has moved the run's position past itself, but it is not done
        # until it is decided.
        waiting = 1 if self.waiting_step is not None else 0
        return max(0, min(self.current_step - waiting, self.step_count))

    @property
    def error_line(self) -> str:
        lines = [line for line in (self.error or "").strip().splitlines() if line.strip()]
        return lines[-1][:200] if lines else ""


def stamp(row: Any) -> str:
    """What changes whenever a card would look different (the live poll compares it)."""
    micros = int(row.updated_at.timestamp() * 1_000_000) if row.updated_at else 0
    return f"{micros}-{row.status}-{row.current_step}"


def build_cards(rows: Sequence[Any]) -> list[Card]:
    infos = version_infos({r.version_id for r in rows})
    waiting = open_waits([r.id for r in rows if r.status in ("suspended", "paused")])
    shown = links_visible()
    slotted = domain.waiting_runs([r.id for r in rows if r.status == "pending"])
    emails = approval_emails(list(waiting))
    cards = []
    for r in rows:
        info = infos.get(r.version_id) or VersionInfo("?", "", "?", ())
        wait = waiting.get(r.id)
        step_name = info.steps[r.current_step] if r.current_step < len(info.steps) else None
        cards.append(
            Card(
                id=r.id,
                status=r.status,
                trigger=r.trigger,
                workflow=info.workflow,
                title=info.title,
                version=info.label,
                current_step=r.current_step,
                step_count=r.step_count or len(info.steps),
                step_name=step_name,
                created_at=isoformat(r.created_at),
                started_at=isoformat(r.started_at),
                finished_at=isoformat(r.finished_at),
                compute_ms=r.compute_ms,
                paused_from=r.paused_from,
                wake_at=isoformat(r.wake_at),
                error=r.error if shown else mask_links(r.error),
                stamp=stamp(r),
                actions=domain.allowed_actions(r.status, r.paused_from, wait is not None),
                deadline=isoformat(wait[1]) if wait else None,
                waiting_step=wait[0] if wait else None,
                slots=(slotted[r.id].running, slotted[r.id].limit) if r.id in slotted else None,
                email=emails.get(r.id),
            )
        )
    return cards


def open_waits(run_ids: list[str]) -> dict[str, tuple[str, datetime | None]]:
    """The open suspend waitpoint of each of these runs: (step name, deadline)."""
    if not run_ids:
        return {}
    rows = db.session.execute(
        select(Waitpoint.run_id, Waitpoint.step_name, Waitpoint.expires_at).where(
            Waitpoint.run_id.in_(run_ids), Waitpoint.kind == "suspend", Waitpoint.state == "open"
        )
    ).all()
    return {r.run_id: (r.step_name, r.expires_at) for r in rows}


@dataclass(frozen=True)
class ApprovalEmail:
    """An email a waiting step sent (who to, subject, text), its links masked for those who
    may not see links."""

    recipients: list[str]
    subject: str
    text: str


def approval_emails(
    run_ids: list[str], waitpoint: Waitpoint | None = None, links: bool | None = None
) -> dict[str, ApprovalEmail]:
    """The last email the step execution waiting for a decision sent, per run: of the open
    suspends of ``run_ids``, or of ``waitpoint`` (whatever its state)."""
    shown = links_visible() if links is None else links
    M, W = OutboxMessage, Waitpoint
    query = select(M.run_id, M.recipients, M.subject, M.text).order_by(M.id)
    if waitpoint is not None:
        query = query.where(
            M.run_id == waitpoint.run_id,
            M.step_name == waitpoint.step_name,
            M.runs == waitpoint.runs,
        )
    elif run_ids:
        query = query.join(
            W, and_(W.run_id == M.run_id, W.step_name == M.step_name, W.runs == M.runs)
        ).where(M.run_id.in_(run_ids), W.kind == "suspend", W.state == "open")
    else:
        return {}
    emails = {}
    for row in db.session.execute(query):
        text = row.text if shown else mask_links(row.text)
        emails[row.run_id] = ApprovalEmail(list(row.recipients or []), row.subject, text)
    return emails


def card(run_id: str) -> Card | None:
    row = db.session.execute(select(*CARD_COLUMNS).where(Run.id == run_id)).first()
    return build_cards([row])[0] if row is not None else None


@dataclass
class Page:
    cards: list[Card]
    older: str | None  # the cursor of the next (older) page, if any


def page_of_runs(f: Filters, before: str | None, size: int = PAGE_SIZE) -> Page:
    """Newest first; ``before`` is the cursor (the last id of the previous page)."""
    if f.impossible:
        return Page([], None)
    query = select(*CARD_COLUMNS).where(*f.run_filter.conditions())
    if before:
        query = query.where(Run.id < before)
    rows = db.session.execute(query.order_by(Run.id.desc()).limit(size + 1)).all()
    more = len(rows) > size
    rows = rows[:size]
    return Page(build_cards(rows), rows[-1].id if more and rows else None)


def status_counts(f: Filters) -> dict[str, int]:
    """Runs per status under the filters other than status (so each count is a filter)."""
    if f.impossible:
        return {}
    rows = db.session.execute(
        select(Run.status, func.count())
        .where(*f.run_filter.conditions(statuses=False))
        .group_by(Run.status)
    ).all()
    return {status: count for status, count in rows}


def bulk_counts(f: Filters, counts: dict[str, int]) -> dict[str, int]:
    """How many runs each bulk action would change now (from the counts shown)."""
    wanted = set(f.run_filter.statuses) or set(RUN_STATUSES)
    return {
        action: sum(counts.get(s, 0) for s in statuses if s in wanted)
        for action, statuses in domain.BULK_FROM.items()
    }


def approvals(after: str | None = None) -> Page:
    """Every run waiting on an approval (suspended, or paused while suspended), soonest
    deadline first, runs without a deadline last; paged by a cursor of the last card's
    ``<deadline>~<run id>``."""
    query = (
        select(*CARD_COLUMNS, Waitpoint.expires_at.label("deadline"))
        .join(Waitpoint, Waitpoint.run_id == Run.id)
        .where(
            Run.status.in_(("suspended", "paused")),
            Waitpoint.kind == "suspend",
            Waitpoint.state == "open",
        )
    )
    deadline, _, last_id = (after or "").partition("~")
    if RUN_ID_RE.match(last_id):
        if deadline:
            try:
                moment = datetime.fromisoformat(deadline)
            except ValueError:
                moment = None
            if moment is not None:
                query = query.where(
                    or_(
                        Waitpoint.expires_at > moment,
                        and_(Waitpoint.expires_at == moment, Run.id > last_id),
                        Waitpoint.expires_at.is_(None),
                    )
                )
        else:
            query = query.where(Waitpoint.expires_at.is_(None), Run.id > last_id)
    rows = db.session.execute(
        query.order_by(Waitpoint.expires_at.is_(None), Waitpoint.expires_at, Run.id).limit(
            APPROVALS_PAGE + 1
        )
    ).all()
    more = len(rows) > APPROVALS_PAGE
    rows = rows[:APPROVALS_PAGE]
    cursor = None
    if more and rows:
        last = rows[-1]
        cursor = f"{isoformat(last.deadline) or ''}~{last.id}"
    return Page(build_cards(rows), cursor)


def poll(
    stamps: dict[str, str], newest: str | None, f: Filters | None
) -> tuple[list[Card], list[Card]]:
    """The live poll, in one query: the given runs whose stamp moved (by primary key) and,
    when ``f`` is given, up to a page of runs newer than ``newest`` that match the filters
    (a primary-key range). Returns (changed cards, new cards, newest first)."""
    fresh = f is not None and newest is not None and not f.impossible
    parts = []
    if stamps:
        parts.append(select(*CARD_COLUMNS).where(Run.id.in_(list(stamps))))
    if fresh:
        assert f is not None
        newer = (
            select(*CARD_COLUMNS)
            .where(Run.id > newest, *f.run_filter.conditions())
            .order_by(Run.id.desc())
            .limit(PAGE_SIZE)
            .subquery()
        )
        parts.append(select(newer))
    if not parts:
        return [], []
    # UNION ALL, not OR: each part keeps its index (SQLite would scan the table for an OR).
    query = union_all(*parts) if len(parts) > 1 else parts[0]
    rows = db.session.execute(query).all()
    changed = [r for r in rows if r.id in stamps and stamp(r) != stamps[r.id]]
    new = sorted(
        (r for r in rows if fresh and r.id not in stamps and r.id > (newest or "")),
        key=lambda r: r.id,
        reverse=True,
    )
    return build_cards(changed), build_cards(new)


def newly_waiting(since: datetime, known: Sequence[str]) -> int:
    """Runs that started waiting for a decision after ``since`` and are not among the ``known``
    cards: the Approvals page's poll says how many, so that a new one is not missed. Reads
    only suspended runs (by the status index)."""
    query = (
        select(func.count())
        .select_from(Run)
        .where(Run.status == "suspended", Run.updated_at > since)
    )
    if known:
        query = query.where(Run.id.not_in(list(known)))
    return int(db.session.scalar(query) or 0)


def workflow_names() -> list[str]:
    return list(db.session.scalars(select(Workflow.name).order_by(Workflow.name)))
